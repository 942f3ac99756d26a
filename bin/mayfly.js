#!/usr/bin/env node
// The `mayfly` command. The code runs on the Node.js 24 that the package pins
// (the `node` dependency), whatever Node.js started this launcher, because
// src/ is TypeScript run through Node 24's type stripping.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const main = join(root, 'src', 'main.ts')
const pinned = join(root, 'node_modules', 'node', 'bin', 'node')
const major = Number(process.versions.node.split('.')[0])
const node = major >= 24 ? process.execPath : existsSync(pinned) ? pinned : null

if (node === null) {
  console.error(`mayfly needs Node.js 24; this is ${process.version}. Run \`npm install\` in ${root} first.`)
  process.exit(1)
}
if (node === process.execPath) {
  await import(main)
} else {
  const child = spawn(node, [main, ...process.argv.slice(2)], { stdio: 'inherit' })
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)))
}
