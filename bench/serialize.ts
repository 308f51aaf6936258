/**
 * JSON.stringify against the schema-compiled serializer of lib/messages/compile.ts, on the same
 * `{ type, data }` envelope. Run with `npm run bench`; see bench/README.md.
 */
import { arch, cpus, platform } from 'node:os'
import { Type, type TSchema } from '@sinclair/typebox'
import { compileContract } from '../lib/messages/compile.js'
import { defineContract } from '../lib/messages/contract.js'

const ROUNDS = 15

// ~40 small fields, ~4 KiB in all: 30 short strings, 5 numbers, 5 booleans.
const wideSchema: Record<string, TSchema> = {}
const wideData: Record<string, unknown> = {}
for (let i = 0; i < 40; i++) {
  const name = `field${i}`
  if (i % 8 === 5) {
    wideSchema[name] = Type.Number()
    wideData[name] = i * 1234.5
  } else if (i % 8 === 6) {
    wideSchema[name] = Type.Boolean()
    wideData[name] = i % 3 === 0
  } else {
    wideSchema[name] = Type.String()
    wideData[name] = `value ${i}: `.padEnd(120, 'lorem ipsum dolor sit amet ')
  }
}

const contract = defineContract({
  client: {},
  server: {
    say: Type.Object({ text: Type.String() }),
    long: Type.Object({ text: Type.String() }),
    wide: Type.Object(wideSchema)
  }
})
const compiled = compileContract(contract)

interface Case {
  readonly name: string
  readonly type: 'say' | 'long' | 'wide'
  readonly data: unknown
  readonly iterations: number
}

const cases: Case[] = [
  { name: 'small: { type: \'say\', data: { text: \'hello world\' } }', type: 'say', data: { text: 'hello world' }, iterations: 200_000 },
  { name: '4 KiB: one 4000-char string', type: 'long', data: { text: 'x'.repeat(4000) }, iterations: 20_000 },
  { name: '4 KiB: 40 small fields', type: 'wide', data: wideData, iterations: 20_000 }
]

type Serialize = (envelope: { type: string, data: unknown }) => string

/** Runs `iterations` serializations of a fresh envelope (as the session builds one per send); returns ns/op. */
function measure (serialize: Serialize, type: string, data: unknown, iterations: number): number {
  let sink = 0
  const start = process.hrtime.bigint()
  for (let i = 0; i < iterations; i++) sink += serialize({ type, data }).length
  const elapsed = process.hrtime.bigint() - start
  // Keeps the result observable so the loop cannot be optimized away.
  if (sink === -1) console.log(sink)
  return Number(elapsed) / iterations
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] as number : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2
}

const format = (ns: number): string => ns < 100 ? ns.toFixed(1) : ns.toFixed(0)

const rows: string[] = []
for (const { name, type, data, iterations } of cases) {
  const entry = compiled.server.get(type)
  if (entry === undefined) throw new Error(`no server message type ${type}`)
  const schemaCompiled: Serialize = entry.serialize
  const native: Serialize = JSON.stringify
  const sample = { type, data }
  if (schemaCompiled(sample) !== native(sample)) throw new Error(`${type}: the two serializers disagree`)
  const bytes = Buffer.byteLength(native(sample))

  // One warm-up round each, then ROUNDS rounds alternating which variant goes first.
  measure(native, type, data, iterations)
  measure(schemaCompiled, type, data, iterations)
  const times: { native: number[], compiled: number[] } = { native: [], compiled: [] }
  for (let round = 0; round < ROUNDS; round++) {
    if (round % 2 === 0) {
      times.native.push(measure(native, type, data, iterations))
      times.compiled.push(measure(schemaCompiled, type, data, iterations))
    } else {
      times.compiled.push(measure(schemaCompiled, type, data, iterations))
      times.native.push(measure(native, type, data, iterations))
    }
  }
  const nativeMedian = median(times.native)
  const compiledMedian = median(times.compiled)
  const range = (list: number[]): string => `${format(Math.min(...list))}–${format(Math.max(...list))}`
  rows.push(`| ${name} | ${bytes} | ${iterations} | ${format(nativeMedian)} (${range(times.native)}) | ` +
    `${format(compiledMedian)} (${range(times.compiled)}) | ${(nativeMedian / compiledMedian).toFixed(2)} |`)
}

console.log(`Node ${process.version}, ${platform()} ${arch()}, ${cpus().length} × ${cpus()[0]?.model ?? 'unknown CPU'}`)
console.log(`${ROUNDS} rounds per case after one warm-up round; ns/op as median (min–max over the rounds).`)
console.log('ratio = JSON.stringify median / fast-json-stringify median: above 1, fast-json-stringify is faster.\n')
console.log('| message | bytes | iterations per round | JSON.stringify ns/op | fast-json-stringify ns/op | ratio |')
console.log('| --- | --- | --- | --- | --- | --- |')
for (const row of rows) console.log(row)
