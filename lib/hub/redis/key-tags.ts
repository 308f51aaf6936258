/**
 * The Redis Cluster hash tag of a room: `{` + the room's name + `}`, with `%`, `{` and `}` written
 * as `%25`, `%7B` and `%7D`. Redis hashes only what lies between the first `{` and the next `}`, so
 * a raw `}` in a name would end the tag early (an empty tag when the name starts with it, and keys
 * of one room on different slots: CROSSSLOT). Encoded, a name can neither end nor empty the tag;
 * names without those three characters keep their keys of earlier versions. Only `%` is escaped
 * besides the braces, which keeps the mapping one-to-one; the empty name gets a lone `%`, which
 * no encoding produces.
 */
export function roomTag (room: string): string {
  if (room === '') return '{%}'
  return `{${room.replace(/[%{}]/g, escape)}}`
}

/** The room of a tag made by roomTag() (given without its braces). */
export function roomOfTag (tag: string): string {
  if (tag === '%') return ''
  return tag.replace(/%(25|7B|7D)/g, unescape)
}

const ESCAPES: Record<string, string> = { '%': '%25', '{': '%7B', '}': '%7D' }
const UNESCAPES: Record<string, string> = { 25: '%', '7B': '{', '7D': '}' }

function escape (char: string): string {
  return ESCAPES[char] as string
}

function unescape (_match: string, code: string): string {
  return UNESCAPES[code] as string
}

/**
 * Why a key prefix would break the tags, or null if it does not: a `{` or `}` in the prefix would
 * make Redis hash the prefix (one slot for every room) or cut the room's tag.
 */
export function prefixProblem (prefix: string): string | null {
  return /[{}]/.test(prefix) ? 'a string without "{" or "}" (a brace would put every room in one Redis Cluster slot)' : null
}

/**
 * The Redis Cluster slot of a room's keys and channel: CRC16 (XMODEM) of its tag's UTF-8 bytes,
 * modulo 16384, as Redis computes it.
 */
export function roomSlot (room: string): number {
  const tag = roomTag(room)
  let crc = 0
  for (const byte of Buffer.from(tag.slice(1, -1))) {
    crc ^= byte << 8
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff
  }
  return crc % 16384
}
