import { clientSpec, type Contract } from '../messages/contract.js'
import { AUTH, AUTH_REPLY, ERROR, JOIN, JOIN_REPLY, LEAVE, LEAVE_REPLY, LOST, PING, PONG, PRESENCE, replyType } from '../protocol.js'
import { systemMessages } from '../protocol-schemas.js'
import { componentKey, SchemaComponents, type JsonSchema } from './schemas.js'

// The AsyncAPI 3.0 document of an app's contract routes. The plugin is the server: what a client
// sends is an operation the app `receive`s, what it sends is `send`; a request's answer is the
// operation's `reply`. System messages are described once, in `components.messages`.

/** How a tokenAuth() hook on the route looks for the token. */
export interface TokenAuthSource {
  readonly from: readonly string[]
  readonly queryParam: string
  readonly cookieName: string
  readonly protocolMarker: string
}

/** A contract route as registered: what the document needs of it. */
export interface ContractRoute {
  /** The URL with the prefix the route was registered under, e.g. `/v1/chat` or `/rooms/:id`. */
  readonly url: string
  readonly contract: Contract
  readonly querystring?: unknown
  readonly headers?: unknown
  /** The route authenticates with a first `$auth` message. */
  readonly firstMessageAuth: boolean
  /** Clients join and leave rooms with `$join` and `$leave`. */
  readonly clientRooms: boolean
  readonly tokenAuth: TokenAuthSource | null
}

export interface AsyncApiServer {
  /** `host[:port]`, e.g. `chat.example.com` or `127.0.0.1:3000`. */
  host: string
  /** @default 'ws' */
  protocol?: 'ws' | 'wss'
  /** A path every channel address is under (the prefix is already in each route's address). */
  pathname?: string
  description?: string
}

/** What `app.realtime.asyncapi()` takes: the document's `info` and `servers`. */
export interface AsyncApiOptions {
  /** @default 'fastify-realtime API' */
  title?: string
  /** The API's version (not AsyncAPI's). @default '1.0.0' */
  version?: string
  description?: string
  /** Servers by name; none by default. */
  servers?: Record<string, AsyncApiServer>
}

/** An AsyncAPI 3.0 document: plain JSON. */
export interface AsyncApiDocument {
  asyncapi: '3.0.0'
  info: { title: string, version: string, description?: string }
  defaultContentType: 'application/json'
  servers?: Record<string, JsonSchema>
  channels: Record<string, JsonSchema>
  operations: Record<string, JsonSchema>
  components: { schemas: Record<string, JsonSchema>, messages: Record<string, JsonSchema>, securitySchemes?: Record<string, JsonSchema> }
}

/** Codes an error envelope may carry beside an app's own MessageError codes (docs/api.md#errors). */
export const ENVELOPE_ERROR_CODES = Object.freeze([
  'FST_RT_MESSAGE_NOT_JSON', 'FST_RT_MESSAGE_TOO_DEEP', 'FST_RT_MESSAGE_NOT_ENVELOPE', 'FST_RT_UNKNOWN_MESSAGE_TYPE',
  'FST_RT_INVALID_MESSAGE_DATA', 'FST_RT_BINARY_NOT_ACCEPTED', 'FST_RT_RATE_LIMITED', 'FST_RT_HANDLER_FAILED',
  'FST_RT_REQUEST_TIMEOUT', 'FST_RT_INVALID_ROOM', 'FST_RT_JOIN_FORBIDDEN', 'FST_RT_TOO_MANY_ROOMS'
])

const SYSTEM_SUMMARIES: Readonly<Record<string, string>> = {
  [AUTH]: 'The first message on a route with auth: data is the token.',
  [AUTH_REPLY]: 'The token was accepted: the user id.',
  [PING]: 'Liveness from a client that cannot see WebSocket pings.',
  [PONG]: 'The answer to $ping.',
  [JOIN]: 'Joins a room; with epoch and offset, recovers what the client missed.',
  [JOIN_REPLY]: 'The room joined, its position, and whether every missed message follows.',
  [LEAVE]: 'Leaves a room.',
  [LEAVE_REPLY]: 'Whether the connection was in the room.',
  [PRESENCE]: 'A member joined or left a room whose joins are announced.',
  [LOST]: 'The server lost messages of a room: reload it.',
  [ERROR]: 'Bad input, a failed request, or a failure with no request to answer.'
}

const REQUEST_ID: JsonSchema = { description: 'Sent with a request, repeated by its answer.', anyOf: [{ type: 'string' }, { type: 'number' }] }
const ROOM_POSITION: Record<string, JsonSchema> = {
  room: { type: 'string', description: 'On a room message: the room.' },
  epoch: { type: 'string', description: 'On a room message: the room history\'s epoch.' },
  offset: { type: 'integer', minimum: 0, description: 'On a room message: its offset in the room.' },
  volatile: { const: true, description: 'On a volatile room message: not stored, no offset to recover from.' }
}

/** The `{ type, data, id? }` envelope of message `type` (room messages carry their position too). */
function envelopeSchema (type: string, data: JsonSchema, id: JsonSchema, extra: Record<string, JsonSchema> = {}): JsonSchema {
  return {
    type: 'object',
    properties: { type: { const: type }, data, id, ...extra },
    required: ['type', 'data']
  }
}

function systemKey (type: string): string {
  return componentKey('system.' + type.replace(/^\$/, '').replace(':', '.'))
}

/** A route's path as a channel address: Fastify's `:name` parameters in AsyncAPI's braces. */
function address (url: string): { address: string, parameters: string[] } {
  const parameters: string[] = []
  const text = url.replace(/:([A-Za-z0-9_]+)(\([^)]*\))?/g, (_match, name: string) => {
    parameters.push(name)
    return `{${name}}`
  }).replace(/\*$/, '{wildcard}')
  if (url.endsWith('*')) parameters.push('wildcard')
  return { address: text, parameters }
}

function uniqueKey (wanted: string, taken: Record<string, unknown>): string {
  let key = componentKey(wanted === '' ? 'root' : wanted)
  for (let n = 2; key in taken; n++) key = `${componentKey(wanted)}_${n}`
  return key
}

function securitySchemes (route: ContractRoute): Record<string, JsonSchema> {
  const schemes: Record<string, JsonSchema> = {}
  const token = route.tokenAuth
  for (const source of token?.from ?? []) {
    if (source === 'header') schemes.bearer = { type: 'http', scheme: 'bearer', description: 'tokenAuth(): an Authorization: Bearer header on the upgrade request.' }
    if (source === 'query') schemes[`query.${componentKey(token!.queryParam)}`] = { type: 'httpApiKey', in: 'query', name: token!.queryParam, description: 'tokenAuth(): the token in the query of the upgrade request.' }
    if (source === 'cookie') schemes[`cookie.${componentKey(token!.cookieName)}`] = { type: 'httpApiKey', in: 'cookie', name: token!.cookieName, description: 'tokenAuth(): the token in a cookie.' }
    if (source === 'protocol') {
      schemes[`protocol.${componentKey(token!.protocolMarker)}`] = {
        type: 'httpApiKey',
        in: 'header',
        name: 'Sec-WebSocket-Protocol',
        description: `tokenAuth(): the subprotocol after "${token!.protocolMarker}" is the token.`
      }
    }
  }
  if (route.firstMessageAuth) {
    schemes.firstMessage = { type: 'apiKey', in: 'user', description: 'The first message is { "type": "$auth", "data": token }, answered by $auth:reply; a refused token closes with 4501.' }
  }
  return schemes
}

/** Builds the document of `routes`; throws FST_RT_ASYNCAPI_UNSUPPORTED for a schema it cannot describe. */
export function asyncApiDocument (routes: readonly ContractRoute[], options: AsyncApiOptions = {}): AsyncApiDocument {
  const schemas = new SchemaComponents()
  const requestId = schemas.add('RequestId', REQUEST_ID)
  const messages: Record<string, JsonSchema> = {}
  for (const [type, message] of Object.entries(systemMessages)) {
    let data = schemas.convert(message.data, type)
    if (type === ERROR) {
      const properties = data.properties as Record<string, JsonSchema>
      data = { ...data, properties: { ...properties, code: { ...properties.code, description: 'FST_RT_ codes, or an app\'s MessageError code.', examples: [...ENVELOPE_ERROR_CODES] } } }
    }
    messages[systemKey(type)] = {
      name: type,
      title: type,
      summary: SYSTEM_SUMMARIES[type],
      payload: envelopeSchema(type, data, requestId)
    }
  }
  const channels: Record<string, JsonSchema> = {}
  const operations: Record<string, JsonSchema> = {}
  const allSchemes: Record<string, JsonSchema> = {}
  for (const route of routes) {
    const { address: path, parameters } = address(route.url)
    const channelKey = uniqueKey(route.url.replace(/^\/+|\/+$/g, '').replace(/:/g, '').replace(/\*/g, 'wildcard'), channels)
    const channelRef = { $ref: `#/channels/${channelKey}` }
    const channelMessages: Record<string, JsonSchema> = {}
    const schemes = securitySchemes(route)
    Object.assign(allSchemes, schemes)
    const security = Object.keys(schemes).map((name) => ({ $ref: `#/components/securitySchemes/${name}` }))
    const operation = (name: string, action: 'send' | 'receive', message: string, reply?: string[]): void => {
      operations[uniqueKey(`${channelKey}.${name}`, operations)] = {
        action,
        channel: channelRef,
        messages: [{ $ref: `#/channels/${channelKey}/messages/${message}` }],
        ...(reply === undefined ? {} : { reply: { channel: channelRef, messages: reply.map((key) => ({ $ref: `#/channels/${channelKey}/messages/${key}` })) } }),
        ...(security.length === 0 ? {} : { security })
      }
    }
    const system = (type: string): string => {
      const key = systemKey(type)
      channelMessages[key] = { $ref: `#/components/messages/${key}` }
      return key
    }
    const errorKey = system(ERROR)
    const where = (side: string, type: string): string => `${route.url} ${side}.${type}`
    for (const [type, spec] of Object.entries(route.contract.client)) {
      const { data, reply } = clientSpec(spec)
      const key = uniqueKey(type, channelMessages)
      channelMessages[key] = { name: type, title: type, payload: envelopeSchema(type, schemas.convert(data, where('client', type)), requestId) }
      if (reply === undefined) {
        operation(key, 'receive', key)
        continue
      }
      const replyKey = uniqueKey(`${key}.reply`, channelMessages)
      const answer = replyType(type)
      channelMessages[replyKey] = { name: answer, title: answer, payload: envelopeSchema(answer, schemas.convert(reply, where('client', `${type}.reply`)), requestId) }
      operation(key, 'receive', key, [replyKey, errorKey])
    }
    for (const [type, schema] of Object.entries(route.contract.server)) {
      // A type both sides send (say, `typing`) is two messages: the server's is keyed `<type>.server`.
      const key = uniqueKey(type in channelMessages ? `${type}.server` : type, channelMessages)
      channelMessages[key] = { name: type, title: type, payload: envelopeSchema(type, schemas.convert(schema, where('server', type)), requestId, ROOM_POSITION) }
      operation(key, 'send', key)
    }
    const ping = system(PING)
    operation(ping, 'receive', ping, [system(PONG), errorKey])
    if (route.firstMessageAuth) {
      const auth = system(AUTH)
      operation(auth, 'receive', auth, [system(AUTH_REPLY), errorKey])
    }
    if (route.clientRooms) {
      for (const [request, answer] of [[JOIN, JOIN_REPLY], [LEAVE, LEAVE_REPLY]] as const) {
        const key = system(request)
        operation(key, 'receive', key, [system(answer), errorKey])
      }
    }
    for (const notice of [PRESENCE, LOST]) operation(system(notice), 'send', system(notice))
    operation(errorKey, 'send', errorKey)
    const bindings: JsonSchema = { method: 'GET', bindingVersion: '0.1.0' }
    if (route.querystring !== undefined) bindings.query = schemas.convert(route.querystring, `${route.url} querystring`)
    if (route.headers !== undefined) bindings.headers = schemas.convert(route.headers, `${route.url} headers`)
    channels[channelKey] = {
      address: path,
      messages: channelMessages,
      ...(parameters.length === 0 ? {} : { parameters: Object.fromEntries(parameters.map((name) => [name, { description: `The route parameter ${name}.` }])) }),
      bindings: { ws: bindings }
    }
  }
  schemas.checkRefs()
  const document: AsyncApiDocument = {
    asyncapi: '3.0.0',
    info: {
      title: options.title ?? 'fastify-realtime API',
      version: options.version ?? '1.0.0',
      ...(options.description === undefined ? {} : { description: options.description })
    },
    defaultContentType: 'application/json',
    channels,
    operations,
    components: { schemas: schemas.schemas, messages }
  }
  if (Object.keys(allSchemes).length > 0) document.components.securitySchemes = allSchemes
  if (options.servers !== undefined) {
    document.servers = Object.fromEntries(Object.entries(options.servers).map(([name, server]) => [componentKey(name), {
      host: server.host,
      protocol: server.protocol ?? 'ws',
      ...(server.pathname === undefined ? {} : { pathname: server.pathname }),
      ...(server.description === undefined ? {} : { description: server.description })
    }]))
  }
  return document
}
