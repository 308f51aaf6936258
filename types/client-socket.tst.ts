/// <reference lib="dom" />
import { describe, expect, test } from 'tstyche'
import WebSocket from 'ws'
import { RealtimeClient, type WebSocketClass, type WebSocketLike } from '../lib/client/index.js'
import { defineContract } from '../lib/messages/contract.js'

const contract = defineContract({ client: {}, server: {} })

// The browser's class, from lib.dom: what `globalThis.WebSocket` is in a page.
declare const BrowserWebSocket: typeof globalThis.WebSocket

describe('the client takes a WebSocket class without a cast', () => {
  test("ws's WebSocket", () => {
    expect(WebSocket).type.toBeAssignableTo<WebSocketClass>()
    expect(new WebSocket('ws://x')).type.toBeAssignableTo<WebSocketLike>()
    expect(new RealtimeClient<typeof contract>({ url: 'ws://x', WebSocket })).type.not.toRaiseError()
  })

  test("the browser's WebSocket (lib.dom)", () => {
    expect(BrowserWebSocket).type.toBeAssignableTo<WebSocketClass>()
    expect(new BrowserWebSocket('ws://x')).type.toBeAssignableTo<WebSocketLike>()
    expect(new RealtimeClient<typeof contract>({ url: 'ws://x', WebSocket: BrowserWebSocket })).type.not.toRaiseError()
  })

  test('a class that is not a WebSocket is refused', () => {
    class NoSend {
      readonly readyState = 0
      onopen = null
      onmessage = null
      onclose = null
      onerror = null
      close (): void {}
    }
    class WrongCloseEvent {
      readonly readyState = 0
      onopen = null
      onmessage = null
      onclose: ((event: { code: string, reason: string }) => void) | null = null
      onerror = null
      send (_data: string): void {}
      close (): void {}
    }
    class NeedsOptions {
      // eslint-disable-next-line @typescript-eslint/no-useless-constructor -- its parameters are what is tested
      constructor (_url: string, _protocols: string[], _options: { agent: object }) {}
    }
    expect(NoSend).type.not.toBeAssignableTo<WebSocketClass>()
    expect(WrongCloseEvent).type.not.toBeAssignableTo<WebSocketClass>()
    expect(NeedsOptions).type.not.toBeAssignableTo<WebSocketClass>()
    expect(new RealtimeClient<typeof contract>({ url: 'ws://x', WebSocket: NoSend })).type.toRaiseError()
  })
})
