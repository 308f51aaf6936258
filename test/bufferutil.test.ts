import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'
import t from 'tap'
import './support/process-guard.js'

// bufferutil is an optional dependency: ws masks and unmasks frames with its native binding when it
// loads. It ships N-API prebuilds (one binary for every Node version) and builds from source
// otherwise; CI runs this file on each Node it supports.
interface BufferUtil {
  mask (source: Buffer, mask: Buffer, output: Buffer, offset: number, length: number): void
  unmask (buffer: Buffer, mask: Buffer): void
}

const require = createRequire(import.meta.url)
const entry = require.resolve('bufferutil')

t.test('ws loads bufferutil when it loads', async (t) => {
  t.equal(require.cache[entry], undefined, 'not loaded before ws')
  await import('ws')
  t.ok(require.cache[entry], 'loaded by ws')
})

t.test(`bufferutil has a native binding for Node ${process.version}, which masks as the JavaScript fallback does`, async (t) => {
  const nodeGypBuild = createRequire(entry)('node-gyp-build') as { path (dir: string): string }
  t.match(nodeGypBuild.path(dirname(entry)), /\.node$/)
  const native = require('bufferutil') as BufferUtil
  const fallback = require('bufferutil/fallback.js') as BufferUtil
  t.not(native.mask, fallback.mask, 'the native binding, not the fallback')
  const source = randomBytes(1000)
  const key = randomBytes(4)
  const masked = Buffer.alloc(1010)
  const expected = Buffer.alloc(1010)
  native.mask(source, key, masked, 10, source.length)
  fallback.mask(source, key, expected, 10, source.length)
  t.same(masked, expected)
  const unmasked = masked.subarray(10)
  native.unmask(unmasked, key)
  t.same(unmasked, source)
})
