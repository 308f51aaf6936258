import { errors } from '../errors.js'
import type { Broker, HistoryPage, HistoryQuery } from './broker.js'

/**
 * A history read as apps ask for it: a range of offsets (both ends exclusive), at most `limit`
 * messages, from either end. Messages always come oldest first, with the room's position.
 *
 * - after an offset: `{ since: 41, limit: 50 }` (the oldest 50 after 41)
 * - the latest N: `{ limit: 50, newest: true }`
 * - before an offset (paging back): `{ before: 42, limit: 50, newest: true }`
 */
export interface HistoryRange extends HistoryQuery {
  /** Messages with an offset greater than this. @default 0 */
  since?: number
  /** Messages with an offset lower than this. @default none */
  before?: number
  /** At most this many; 0 returns none (only the position). @default all retained */
  limit?: number
  /** Which end `limit` keeps: the newest messages of the range (true) or the oldest (false). @default false */
  newest?: boolean
}

const KEYS = new Set(['since', 'before', 'limit', 'newest'])

function offsetBound (name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new errors.FST_RT_INVALID_HISTORY_QUERY(`"${name}" must be an integer of 0 or more, got ${typeof value === 'number' ? value : typeof value}`)
  }
  return value
}

/** Checks a range: FST_RT_INVALID_HISTORY_QUERY for an unknown key or a value of the wrong type. */
export function checkRange (range: unknown): Required<Pick<HistoryRange, 'since' | 'newest'>> & Pick<HistoryRange, 'before' | 'limit'> {
  if (range === undefined) return { since: 0, newest: false }
  if (typeof range !== 'object' || range === null || Array.isArray(range)) throw new errors.FST_RT_INVALID_HISTORY_QUERY('expected an object { since?, before?, limit?, newest? }')
  for (const key of Object.keys(range)) {
    if (!KEYS.has(key)) throw new errors.FST_RT_INVALID_HISTORY_QUERY(`unknown key "${key.slice(0, 64)}"`)
  }
  const { since, before, limit, newest } = range as Record<string, unknown>
  if (newest !== undefined && typeof newest !== 'boolean') throw new errors.FST_RT_INVALID_HISTORY_QUERY('"newest" must be a boolean')
  const checked = { since: offsetBound('since', since) ?? 0, newest: newest === true, before: offsetBound('before', before), limit: offsetBound('limit', limit) }
  return checked
}

/**
 * Reads a range with the broker's own `history()` (messages after an offset, the oldest first), so
 * no broker needs more than that: offsets are dense within an epoch, so the newest `limit` below an
 * offset start at a known one. For the newest messages without `before`, the page read after the
 * position may hold more than were asked (published meanwhile): the newest of it are kept, so the
 * messages always end at the page's position and a client can go on from there without a gap.
 */
export async function readRange (broker: Broker, room: string, range?: HistoryRange): Promise<HistoryPage> {
  const { since, before, limit, newest } = checkRange(range)
  if (!newest) {
    const page = await broker.history(room, limit === undefined ? { since } : { since, limit })
    return before === undefined ? page : { position: page.position, messages: page.messages.filter((message) => message.offset < before) }
  }
  let from = since
  if (limit !== undefined) {
    const { offset } = await broker.position(room)
    const top = before === undefined ? offset : Math.min(before - 1, offset)
    from = Math.max(since, top - limit)
  }
  const page = await broker.history(room, { since: from })
  const inRange = before === undefined ? page.messages : page.messages.filter((message) => message.offset < before)
  return { position: page.position, messages: limit === undefined ? inRange : inRange.slice(Math.max(0, inRange.length - limit)) }
}
