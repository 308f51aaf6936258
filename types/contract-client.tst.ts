// What a client sees: the contract's types through `import type` from lib/messages/contract.ts, the
// module behind the package's "./contract" export. That module imports only @sinclair/typebox, so
// nothing here needs fastify, ws or the server.
import type { TArray, TObject, TString } from '@sinclair/typebox'
import { describe, expect, test } from 'tstyche'
import type {
  ClientData, ClientType, Contract, ContractDefinition, Envelope, ErrorEnvelope, ReplyData, ServerData, ServerType
} from '../lib/messages/contract.js'

// In a client this is `import type { chat } from './contract.js'`: the type of the server's contract value.
declare const chat: Contract<{
  client: {
    join: { data: TObject<{ room: TString }>, reply: TObject<{ members: TArray<TString> }> }
    say: TObject<{ text: TString }>
  }
  server: { message: TObject<{ text: TString }> }
}>
type Chat = typeof chat

/** A client's own typed send, built from the contract's types alone. */
declare function send<K extends ClientType<Chat>> (type: K, data: ClientData<Chat, K>, id?: string | number): Promise<ReplyData<Chat, K>>
/** A client's own typed listener. */
declare function on<K extends ServerType<Chat>> (type: K, listener: (data: ServerData<Chat, K>) => void): void

describe('the contract as a type in a client', () => {
  test('the contract type fits Contract', () => {
    expect(chat).type.toBeAssignableTo<Contract>()
    expect<Chat['client']>().type.toBeAssignableTo<ContractDefinition['client']>()
  })

  test('ClientType and ServerType are literal unions', () => {
    expect<ClientType<Chat>>().type.toBe<'join' | 'say'>()
    expect<ServerType<Chat>>().type.toBe<'message'>()
  })

  test('a client send is typed by the contract, replies included', () => {
    expect(send('join', { room: 'lobby' }, 'r-1')).type.toBe<Promise<{ members: string[] }>>()
    expect(send('say', { text: 'hi' })).type.toBe<Promise<unknown>>()
    expect(send).type.not.toBeCallableWith('join', { room: 1 })
    expect(send).type.not.toBeCallableWith('shout', { text: 'hi' })
  })

  test('a client listener gets the server message data', () => {
    on('message', (data) => { expect(data).type.toBe<{ text: string }>() })
    expect(on).type.not.toBeCallableWith('joined', () => {})
  })

  test('envelopes', () => {
    expect<Envelope<'say', { text: string }>>().type.toBe<{ type: 'say', data: { text: string }, id?: string | number }>()
    expect<ErrorEnvelope['type']>().type.toBe<'error'>()
    expect<ErrorEnvelope['data']['code']>().type.toBe<string>()
    expect<ErrorEnvelope['id']>().type.toBe<string | number | undefined>()
  })
})
