// The typed chat's contract, shared by the server (as a value) and the page (as a type).
import { Type } from '@sinclair/typebox'
import { defineContract } from 'fastify-realtime/contract'

const Room = Type.String({ pattern: '^[a-z0-9-]{1,32}$' })

export const chat = defineContract({
  client: {
    say: Type.Object({ room: Room, text: Type.String({ minLength: 1, maxLength: 500 }) }),
    typing: Type.Object({ room: Room })
  },
  server: {
    message: Type.Object({ user: Type.String(), text: Type.String(), at: Type.Integer() }),
    typing: Type.Object({ user: Type.String() })
  },
  // Each member's presence meta: the online list shows it.
  presence: Type.Object({ device: Type.Union([Type.Literal('web'), Type.Literal('mobile')]) })
})
