// libuv runs file system calls on a pool of 4 threads by default. A storage
// node fsyncs every blob and its directory; with 4 threads, a few slow fsyncs
// stall every other read and write of the process. Imported first by main.ts
// so that it applies before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '32'
