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
    // Volatile: "I am typing" (sent with { volatile: true }, never queued; the server passes it on volatile too).
    typing: Type.Object({ room: Type.String({ minLength: 1, maxLength: 32 }) }),
    // A request: who is in a room now, one entry per connection (a user with two tabs is there twice).
    who: {
      data: Type.Object({ room: Type.String({ minLength: 1, maxLength: 32 }) }),
      reply: Type.Array(Type.Object({ connectionId: Type.String(), user: Type.String() }))
    }
  },
  server: {
    // `at` is the server's time of the message, in ms.
    message: Type.Object({ user: Type.String(), text: Type.String(), at: Type.Integer() }),
    // Someone else in the room is typing (volatile: not kept, dropped for a page that cannot take it now).
    typing: Type.Object({ user: Type.String() })
  }
})
