// File system errors said in words, for people at a terminal (no raw EEXIST).
export function describeFsError(err: unknown, path: string): string {
  const code = (err as NodeJS.ErrnoException).code
  switch (code) {
    case 'ENOENT': return `there is no ${path}`
    case 'EACCES':
    case 'EPERM': return `permission denied: ${path}`
    case 'ENOTDIR': return `a part of ${path} is not a folder`
    case 'EISDIR': return `${path} is a folder`
    case 'EROFS': return `${path} is on a read-only file system`
    case 'ENOSPC':
    case 'EDQUOT': return `no space left for ${path}`
    case 'EEXIST': return `${path} already exists`
    case 'ENAMETOOLONG': return `the name is too long: ${path}`
    default: return `${path}: ${(err as Error).message}`
  }
}
