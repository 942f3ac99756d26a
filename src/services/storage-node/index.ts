// The storage node service: a blob server on local disk (DESIGN §4).
export { buildStorageNode, describeNode, type NodeIdentity, type StorageNodeDeps } from './app.ts'
export { BLOB_HEADER_BYTES, blobPath, loadNodeId, openBlobFiles, type BlobFiles, type OpenedBlob } from './blob-files.ts'
export { DEFAULT_STORAGE_NODE_PORT, runStorageNode, type RunningStorageNode } from './run.ts'
