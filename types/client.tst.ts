import { Type } from '@sinclair/typebox'
import { describe, expect, test } from 'tstyche'
import { RealtimeClient, type ClientState, type JoinOutcome, type MessageMeta } from '../lib/client/index.js'
import { defineContract } from '../lib/messages/contract.js'

const chat = defineContract({
  client: {
    say: Type.Object({ room: Type.String(), text: Type.String() }),
    join: { data: Type.Object({ room: Type.String() }), reply: Type.Object({ members: Type.Array(Type.String()) }) }
  },
  server: {
    message: Type.Object({ text: Type.String(), from: Type.String() }),
    typing: Type.Object({ user: Type.String() })
  }
})

declare const client: RealtimeClient<typeof chat>

describe('RealtimeClient typed by the contract', () => {
  test('send only accepts client-to-server messages with their payloads', () => {
    expect(client.send('say', { room: 'r', text: 'hi' })).type.toBe<boolean>()
    expect(client.send('message', { text: 'x', from: 'y' })).type.toRaiseError()
    expect(client.send('say', { room: 'r' })).type.toRaiseError()
    expect(client.send('say', { room: 1, text: 'hi' })).type.toRaiseError()
    expect(client.send('shout', {})).type.toRaiseError()
  })

  test('handlers get the server-to-client payloads and the room position', () => {
    client.on('message', (data, meta) => {
      expect(data).type.toBe<{ text: string, from: string }>()
      expect(meta).type.toBe<MessageMeta>()
    })
    client.on('typing', (data) => { expect(data.user).type.toBe<string>() })
    expect(client.on('say', () => {})).type.toRaiseError()
    expect(client.on('message', () => {})).type.toBe<() => void>()
  })

  test('request returns the typed reply', () => {
    expect(client.request('join', { room: 'r' })).type.toBe<Promise<{ members: string[] }>>()
    expect(client.request('say', { room: 'r', text: 'x' }, { timeoutMs: 100 })).type.toBe<Promise<unknown>>()
    expect(client.request('join', { room: 1 })).type.toRaiseError()
  })

  test('state, joins and lifecycle events are typed', () => {
    expect(client.state).type.toBe<ClientState>()
    expect(client.join('lobby')).type.toBe<Promise<JoinOutcome>>()
    client.onState((state) => { expect(state).type.toBe<'connecting' | 'open' | 'reconnecting' | 'closed'>() })
    client.onClose((info) => { expect(info.willReconnect).type.toBe<boolean>() })
    client.onLost((lost) => { expect(lost.offset).type.toBe<number>() })
  })

  test('options are checked at compile time', () => {
    expect(new RealtimeClient<typeof chat>({ url: 'ws://x', token: async () => 'tok', queue: { overflow: 'drop-oldest' } })).type.not.toRaiseError()
    expect(new RealtimeClient<typeof chat>({ url: 'ws://x', queue: { overflow: 'drop' } })).type.toRaiseError()
    expect(new RealtimeClient<typeof chat>({ url: 'ws://x', reconnect: true })).type.toRaiseError()
  })
})
