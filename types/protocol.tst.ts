// lib/protocol.ts cannot import TypeBox (the browser client loads it as it is), so it writes the
// types of the system messages by hand; they must be what lib/protocol-schemas.ts checks.
import type { Static } from '@sinclair/typebox'
import { expect, test } from 'tstyche'
import type * as protocol from '../lib/protocol.js'
import type * as schemas from '../lib/protocol-schemas.js'

test('the types of the system messages are the static types of their schemas', () => {
  expect<protocol.AuthData>().type.toBe<Static<typeof schemas.AuthData>>()
  expect<protocol.AuthReplyData>().type.toBe<Static<typeof schemas.AuthReplyData>>()
  expect<protocol.PingData>().type.toBe<Static<typeof schemas.PingData>>()
  expect<protocol.PongData>().type.toBe<Static<typeof schemas.PongData>>()
  expect<protocol.JoinData>().type.toBe<Static<typeof schemas.JoinData>>()
  expect<protocol.JoinReplyData>().type.toBe<Static<typeof schemas.JoinReplyData>>()
  expect<protocol.LeaveData>().type.toBe<Static<typeof schemas.LeaveData>>()
  expect<protocol.LeaveReplyData>().type.toBe<Static<typeof schemas.LeaveReplyData>>()
  expect<protocol.PresenceData>().type.toBe<Static<typeof schemas.PresenceData>>()
  expect<protocol.LostData>().type.toBe<Static<typeof schemas.LostData>>()
  expect<protocol.ErrorData>().type.toBe<Static<typeof schemas.ErrorData>>()
})
