/** A request id: what a client sends in an envelope's `id` and gets back in the reply. */
export type Id = string | number

/** Longest string id, in characters: an id is echoed in full, so it is bounded. */
export const MAX_ID_LENGTH = 128

/** Whether `id` can be a request id: a string of at most MAX_ID_LENGTH characters or a finite number. */
export function isId (id: unknown): id is Id {
  return (typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isFinite(id))
}
