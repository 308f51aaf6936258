import { randomUUID } from 'node:crypto'
import type { Client } from './helpers.js'

/** The next message, parsed. */
export async function json (c: Client): Promise<Record<string, unknown>> {
  return JSON.parse(await c.text()) as Record<string, unknown>
}

/** The next message that is not a presence notice. */
export async function nextMessage (c: Client): Promise<Record<string, unknown>> {
  for (;;) {
    const message = await json(c)
    if (message.type !== '$presence') return message
  }
}

/** Sends `$join` and resolves with its reply (what comes before it is skipped). */
export async function join (c: Client, room: string, extra: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
  const id = randomUUID()
  c.ws.send(JSON.stringify({ type: '$join', data: { room, ...extra }, id }))
  for (;;) {
    const message = await json(c)
    if (message.id === id) return message
  }
}
