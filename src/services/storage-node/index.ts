// The storage node service: a blob server on local disk (DESIGN §4).
export { buildStorageNode, describeNode, type NodeIdentity, type StorageNodeDeps } from './app.ts'
export { blobPath, loadNodeId, openBlobFiles, type BlobFiles, type OpenedBlob } from './blob-files.ts'
export { BLOB_HEADER_BYTES, BLOCK_BYTES } from './blob-format.ts'
export { DEFAULT_STORAGE_NODE_PORT, runStorageNode, type RunningStorageNode } from './run.ts'
