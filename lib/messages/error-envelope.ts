/**
 * What a contract route says back about a bad message, bounded: client-chosen strings are cut, the
 * error list stops early, and a close reason fits its frame. An error envelope is never larger than
 * twice the message it answers plus 2 KiB (README, "Error envelope reference").
 */

import type { Id } from './request-id.js'
import { envelope, ERROR } from '../protocol.js'

export type ValidationErrors = Array<{ path: string, message: string }>

/** Bytes the error list may take beyond the size of the message it answers. */
const LIST_BYTES = 1024
// A close frame's payload is 125 bytes: the code takes 2.
const CLOSE_REASON_BYTES = 123
const ELLIPSIS = '...'

/**
 * `text` cut to at most `max` characters, with '...' added when it was cut. A surrogate pair is
 * never split, so the cut text encodes as the original did.
 */
export function cutEcho (text: string, max: number): string {
  if (text.length <= max) return text
  let end = max
  if (isHighSurrogate(text.charCodeAt(end - 1))) end--
  return `${text.slice(0, end)}${ELLIPSIS}`
}

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}

/** `text` as a close reason: cut, by whole characters, to the 123 bytes of UTF-8 a close frame holds. */
export function closeReason (text: string): string {
  if (Buffer.byteLength(text) <= CLOSE_REASON_BYTES) return text
  const room = CLOSE_REASON_BYTES - ELLIPSIS.length
  let bytes = 0
  let end = 0
  for (const character of text) {
    // A lone surrogate is sent as U+FFFD, three bytes, which byteLength counts too.
    bytes += Buffer.byteLength(character)
    if (bytes > room) break
    end += character.length
  }
  return `${text.slice(0, end)}${ELLIPSIS}`
}

/** The error envelope for a coded error, with validation errors (or none) and MessageError details. */
export function errorEnvelope (error: { code: string, message: string, details?: unknown }, id: Id | undefined, list: ValidationErrors = []): string {
  const data: Record<string, unknown> = { code: error.code, message: error.message, errors: list }
  if (error.details !== undefined) data.details = error.details
  return envelope(ERROR, data, id)
}

/**
 * The first failures of a check that failed: paths and messages only, never values; at most
 * `maxErrors`, each path cut to `maxEchoLength` characters, and no more than `messageLength` + 1 KiB
 * of JSON in all (a path repeats the client's keys, and one key can sit in many paths).
 */
export function listErrors (errors: Iterable<{ path: string, message: string }>, maxErrors: number, maxEchoLength: number, messageLength: number): ValidationErrors {
  const list: ValidationErrors = []
  let bytes = 0
  const budget = messageLength + LIST_BYTES
  for (const error of errors) {
    if (list.length === maxErrors) break
    const entry = { path: error.path === '' ? '/' : cutEcho(error.path, maxEchoLength), message: error.message }
    // The entry and its comma.
    bytes += Buffer.byteLength(JSON.stringify(entry)) + 1
    if (bytes > budget) break
    list.push(entry)
  }
  return list
}
