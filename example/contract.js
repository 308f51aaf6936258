// The demo chat's message contract: one map per direction, a TypeBox schema for each message's data.
// Only the server imports it; the page speaks the same messages through RealtimeClient.
import { Type } from '@sinclair/typebox'
import { defineContract } from 'fastify-realtime/contract'

/** A room name the demo accepts: what `authorize` and the history route check. */
export const ROOM_NAME = /^[a-z0-9-]{1,32}$/

export const chat = defineContract({
  client: {
    // An event: no reply. The text reaches every member of the room, the sender included.
    say: Type.Object({
      room: Type.String({ minLength: 1, maxLength: 32 }),
      text: Type.String({ minLength: 1, maxLength: 500 })
    }),
    // A request: who is in a room now, one entry per connection (a user with two tabs is there twice).
    who: {
      data: Type.Object({ room: Type.String({ minLength: 1, maxLength: 32 }) }),
      reply: Type.Array(Type.Object({ connectionId: Type.String(), user: Type.String() }))
    }
  },
  server: {
    // `at` is the server's time of the message, in ms.
    message: Type.Object({ user: Type.String(), text: Type.String(), at: Type.Integer() })
  }
})
