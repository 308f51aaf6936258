import { readFile } from 'node:fs/promises'
import t from 'tap'
import { closeCodeOf, errors } from '../lib/errors.js'
import { clientErrorCodes } from '../lib/client/errors.js'
import './process-guard.js'

const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
// The server's codes (lib/errors.ts) and the client's (lib/client/errors.ts, no Node built-ins there).
const codes = [...Object.keys(errors), ...Object.keys(clientErrorCodes)]

// One row per code: | `FST_RT_...` | <HTTP status, close code or —> | <when> |
const ROW = /^\| `(FST_RT_[A-Z0-9_]+)` \| ([^|]+?) \| (.+) \|$/
const rows = new Map<string, { status: string, when: string }>()
const duplicates: string[] = []
for (const line of readme.split('\n')) {
  const match = ROW.exec(line)
  if (match === null) continue
  const [, code, status, when] = match as unknown as [string, string, string, string]
  if (rows.has(code)) duplicates.push(code)
  rows.set(code, { status, when })
}

t.test('every error code of the server and the client has a row in the README errors table', async (t) => {
  t.same(codes.filter((code) => !rows.has(code)), [], 'codes missing from the table')
  t.same(duplicates, [], 'codes listed twice')
})

t.test('every FST_RT_ code the README mentions exists', async (t) => {
  const mentioned = new Set(readme.match(/FST_RT_[A-Z0-9_]+/g) ?? [])
  t.ok(mentioned.size > 0)
  t.same([...mentioned].filter((code) => !codes.includes(code)), [], 'unknown codes in the README')
})

t.test('each row gives the HTTP status or the close code its error carries', async (t) => {
  for (const [code, { status, when }] of rows) {
    t.ok(when.trim().length > 0, `${code} says when it is raised`)
    const Ctor = errors[code as keyof typeof errors]
    if (Ctor === undefined) continue
    const closeCode = closeCodeOf(code)
    if (/^\d{3}$/.test(status)) {
      t.equal(status, String(new Ctor().statusCode), `${code} answers ${status}`)
    } else if (/^\d{4}$/.test(status)) {
      t.ok(Number(status) >= 1000 && Number(status) <= 4999, `${code} gives a close code`)
      if (closeCode !== undefined) t.equal(status, String(closeCode), `${code} closes with ${closeCode}`)
    } else {
      t.equal(status, '—', `${code} has neither an HTTP status nor a close code`)
      t.equal(closeCode, undefined, `${code} is paired with no close code`)
    }
  }
})
