const QUOTE = 0x22
const BACKSLASH = 0x5c
const OPEN_ARRAY = 0x5b
const OPEN_OBJECT = 0x7b
const CLOSE_ARRAY = 0x5d
const CLOSE_OBJECT = 0x7d

/**
 * Whether the JSON `text` nests arrays and objects more than `maxDepth` levels deep, found by one
 * pass over its characters, before anything parses it: V8's JSON.parse spends seconds on a few MiB
 * of brackets, and every recursive walk after it (schema checks, error listings, JSON.stringify)
 * would overflow the stack on deep enough data. The pass stops at the first level too deep; brackets
 * inside strings do not count. Text that is not JSON is left for JSON.parse to refuse.
 */
export function nestsDeeperThan (text: string, maxDepth: number): boolean {
  const length = text.length
  // Every level takes an opening bracket: a text this short cannot be too deep.
  if (length <= maxDepth) return false
  let depth = 0
  for (let i = 0; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c === QUOTE) {
      i = endOfString(text, i)
    } else if (c === OPEN_ARRAY || c === OPEN_OBJECT) {
      if (++depth > maxDepth) return true
    } else if (c === CLOSE_ARRAY || c === CLOSE_OBJECT) {
      depth--
    }
  }
  return false
}

/** The index of the quote that ends the string opened at `start`, or the text's length if none does. */
function endOfString (text: string, start: number): number {
  let quote = text.indexOf('"', start + 1)
  while (quote !== -1) {
    // A quote after an odd number of backslashes is escaped: part of the string.
    let backslashes = 0
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++
    if (backslashes % 2 === 0) return quote
    quote = text.indexOf('"', quote + 1)
  }
  return text.length
}
