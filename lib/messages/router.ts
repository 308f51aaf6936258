import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { RealtimeConnection } from '../connection/connection.js'
import { errors } from '../errors.js'
import { compileContract, LIFECYCLE, replyType, type CompiledContract } from './compile.js'
import type { ClientData, ClientType, Contract, HandlerResult, ServerData, ServerType } from './contract.js'
import { MessageError } from './message-error.js'

/** How a contract route treats bad input and requests. */
export interface ContractOptions {
  /** Bad messages get an error envelope ('reply', the connection stays open) or close the connection with 1007 or 1008. @default 'reply' */
  onInvalid?: 'reply' | 1007 | 1008
  /** How long a request (a message with an `id`) may take before it gets a timeout error, in ms. @default 30000 */
  requestTimeout?: number
  /** Check outgoing messages and replies against their schemas at run time too (on in tests, off in production). @default false */
  validateOutgoing?: boolean
  /** Validation errors listed in one error envelope. @default 10 */
  maxErrors?: number
  /** Handlers running at once for one connection; above it, reading waits. @default 32 */
  maxInFlight?: number
}

/** What every handler gets beside its data. */
export interface MessageContext<C extends Contract> {
  readonly connection: RealtimeConnection
  readonly request: FastifyRequest
  /** Sends a server-to-client message of the contract, typed by its schema. */
  send<K extends ServerType<C>>(type: K, data: ServerData<C, K>): Promise<void>
}

/** The context of one client message: its type and, for a request, its id. */
export interface RequestContext<C extends Contract, K extends ClientType<C>> extends MessageContext<C> {
  readonly type: K
  /** The request id the client sent, or undefined for a plain event. */
  readonly id: string | number | undefined
}

export type MessageHandler<C extends Contract, K extends ClientType<C>> =
  (this: FastifyInstance, data: ClientData<C, K>, context: RequestContext<C, K>) => HandlerResult<C, K>

/** One handler per client message type, plus optional lifecycle handlers. */
export type MessageHandlers<C extends Contract> = { [K in ClientType<C>]: MessageHandler<C, K> } & {
  /** After the upgrade, before any message is dispatched. */
  open?: (this: FastifyInstance, context: MessageContext<C>) => unknown
  /** After the connection ended: the close code (null if unknown) and the peer's reason. */
  close?: (this: FastifyInstance, context: MessageContext<C>, code: number | null, reason: string) => unknown
  /** A handler failed or the connection failed (the error is also logged). */
  error?: (this: FastifyInstance, context: MessageContext<C>, error: Error) => unknown
  /** Binary messages; without it they are refused with FST_RT_BINARY_NOT_ACCEPTED. */
  binary?: (this: FastifyInstance, data: Buffer, context: MessageContext<C>) => unknown
}

type AnyHandler = (this: FastifyInstance, ...args: unknown[]) => unknown
type Id = string | number

interface Settings {
  readonly onInvalid: 'reply' | 1007 | 1008
  readonly requestTimeout: number
  readonly validateOutgoing: boolean
  readonly maxErrors: number
  readonly maxInFlight: number
}

const MAX_ID_LENGTH = 128

function settingsOf (options: ContractOptions): Settings {
  const onInvalid = options.onInvalid ?? 'reply'
  if (onInvalid !== 'reply' && onInvalid !== 1007 && onInvalid !== 1008) {
    throw new errors.FST_RT_INVALID_OPTION('"onInvalid"', `expected 'reply', 1007 or 1008, got ${String(onInvalid)}`)
  }
  const positive = (name: string, value: number | undefined, fallback: number): number => {
    if (value === undefined) return fallback
    if (!Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
      throw new errors.FST_RT_INVALID_OPTION(`"${name}"`, `expected an integer from 1 to ${2 ** 31 - 1}, got ${String(value)}`)
    }
    return value
  }
  if (options.validateOutgoing !== undefined && typeof options.validateOutgoing !== 'boolean') {
    throw new errors.FST_RT_INVALID_OPTION('"validateOutgoing"', `expected a boolean, got ${String(options.validateOutgoing)}`)
  }
  return {
    onInvalid,
    requestTimeout: positive('requestTimeout', options.requestTimeout, 30_000),
    validateOutgoing: options.validateOutgoing ?? false,
    maxErrors: positive('maxErrors', options.maxErrors, 10),
    maxInFlight: positive('maxInFlight', options.maxInFlight, 32)
  }
}

function checkHandlers (compiled: CompiledContract, handlers: Record<string, unknown>): void {
  if (typeof handlers !== 'object' || handlers === null) throw new errors.FST_RT_INVALID_HANDLERS('expected an object of handlers')
  for (const [name, handler] of Object.entries(handlers)) {
    if (typeof handler !== 'function') throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" must be a function`)
    if (!LIFECYCLE.has(name) && !compiled.client.has(name)) {
      throw new errors.FST_RT_INVALID_HANDLERS(`"${name}" has no schema in the contract's client messages`)
    }
  }
  for (const type of compiled.client.keys()) {
    if (handlers[type] === undefined) throw new errors.FST_RT_INVALID_HANDLERS(`client message type "${type}" has no handler`)
  }
}

type ValidationErrors = Array<{ path: string, message: string }>

/** The error envelope for a coded error, with validation errors (or none) and MessageError details. */
function errorEnvelope (error: { code: string, message: string, details?: unknown }, id: Id | undefined, list: ValidationErrors = []): string {
  const data: Record<string, unknown> = { code: error.code, message: error.message, errors: list }
  if (error.details !== undefined) data.details = error.details
  return JSON.stringify({ type: 'error', data, id })
}

/**
 * Builds the handler of a contract route: every schema is compiled now, once; each connection then
 * parses, validates and dispatches every message to its handler, and answers requests.
 */
export function contractHandler<C extends Contract> (contract: C, handlers: NoInfer<MessageHandlers<C>>, options: ContractOptions = {}) {
  const compiled = compileContract(contract)
  checkHandlers(compiled, handlers as Record<string, unknown>)
  const settings = settingsOf(options)
  return async function realtimeContract (this: FastifyInstance, connection: RealtimeConnection, request: FastifyRequest): Promise<void> {
    await new Session(this, compiled, handlers as unknown as Record<string, AnyHandler>, settings, connection, request).run()
  }
}

class Session {
  private inFlight = 0
  private slotFreed: (() => void) | null = null
  private readonly context: MessageContext<Contract>

  constructor (
    private readonly app: FastifyInstance,
    private readonly compiled: CompiledContract,
    private readonly handlers: Record<string, AnyHandler>,
    private readonly settings: Settings,
    private readonly connection: RealtimeConnection,
    private readonly request: FastifyRequest
  ) {
    this.context = { connection, request, send: (type, data) => this.send(type, data) }
  }

  async run (): Promise<void> {
    const { handlers, context } = this
    // A failing open handler fails the connection (logged, close 1011) like any route handler.
    await handlers.open?.call(this.app, context)
    let reason = ''
    for (;;) {
      const message = await this.connection.receive()
      if (message.type === 'text') {
        if (!await this.dispatchText(message.data)) break
      } else if (message.type === 'binary') {
        if (handlers.binary === undefined) {
          if (!await this.refuse(new errors.FST_RT_BINARY_NOT_ACCEPTED(), undefined)) break
        } else {
          await this.start(() => this.guard('binary', () => handlers.binary?.call(this.app, message.data, context)))
        }
      } else if (message.type === 'error') {
        await this.report(message.data)
      } else if (message.type === 'close') {
        reason = message.extra
      } else if (message.type === 'closing' || message.type === 'closed') {
        break
      }
    }
    if (handlers.close !== undefined) await this.guard('close', () => handlers.close?.call(this.app, context, this.connection.closeCode, reason))
  }

  /** Parses and checks one text message; returns false when the connection is being closed. */
  private async dispatchText (text: string): Promise<boolean> {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return await this.refuse(new errors.FST_RT_MESSAGE_NOT_JSON(), undefined)
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      return await this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE(`got ${Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : typeof parsed}`), undefined)
    }
    const envelope = parsed as { type?: unknown, data?: unknown, id?: unknown }
    const id = envelope.id
    if (id !== undefined && !((typeof id === 'string' && id.length <= MAX_ID_LENGTH) || (typeof id === 'number' && Number.isFinite(id)))) {
      return await this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE(`"id" must be a string of at most ${MAX_ID_LENGTH} characters or a finite number`), undefined)
    }
    if (typeof envelope.type !== 'string') {
      return await this.refuse(new errors.FST_RT_MESSAGE_NOT_ENVELOPE('"type" must be a string'), id)
    }
    const type = envelope.type
    const entry = this.compiled.client.get(type)
    if (entry === undefined) {
      return await this.refuse(new errors.FST_RT_UNKNOWN_MESSAGE_TYPE(JSON.stringify(type.length > 40 ? `${type.slice(0, 40)}...` : type)), id)
    }
    const data = envelope.data
    if (!entry.check.Check(data)) {
      const list: Array<{ path: string, message: string }> = []
      for (const error of entry.check.Errors(data)) {
        if (list.length === this.settings.maxErrors) break
        list.push({ path: error.path === '' ? '/' : error.path, message: error.message })
      }
      return await this.refuse(new errors.FST_RT_INVALID_MESSAGE_DATA(JSON.stringify(type)), id, list)
    }
    await this.start(() => this.handle(type, data, id))
    return true
  }

  /** Runs `task` without waiting for it, but never more than maxInFlight at once. */
  private async start (task: () => Promise<unknown>): Promise<void> {
    while (this.inFlight >= this.settings.maxInFlight) {
      await new Promise<void>((resolve) => { this.slotFreed = resolve })
    }
    this.inFlight++
    void task().finally(() => {
      this.inFlight--
      const freed = this.slotFreed
      this.slotFreed = null
      freed?.()
    })
  }

  private async handle (type: string, data: unknown, id: Id | undefined): Promise<void> {
    const handler = this.handlers[type] as AnyHandler
    const context = { ...this.context, type, id }
    if (id === undefined) {
      await this.guard(type, () => handler.call(this.app, data, context))
      return
    }
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => { timer = setTimeout(resolve, this.settings.requestTimeout, 'timeout') })
    const running = Promise.resolve().then(() => handler.call(this.app, data, context))
    try {
      const outcome = await Promise.race([running.then((value) => ({ value })), timedOut])
      if (outcome === 'timeout') {
        // The client has its answer; a failure after it is still logged and reported.
        running.catch((error: Error) => this.failedLate(type, error))
        await this.sendError(new errors.FST_RT_REQUEST_TIMEOUT(JSON.stringify(type), this.settings.requestTimeout), id)
        return
      }
      await this.reply(type, outcome.value, id)
    } catch (error) {
      await this.failed(type, error as Error, id)
    } finally {
      clearTimeout(timer)
    }
  }

  private async reply (type: string, value: unknown, id: Id): Promise<void> {
    const entry = this.compiled.client.get(type)
    const data = value === undefined ? null : value
    const reply = entry?.reply ?? null
    if (reply !== null && value === undefined) {
      throw new errors.FST_RT_INVALID_OUTGOING(`reply to ${JSON.stringify(type)}`, 'the handler returned nothing')
    }
    if (reply !== null && this.settings.validateOutgoing && !reply.check.Check(data)) {
      throw new errors.FST_RT_INVALID_OUTGOING(`reply to ${JSON.stringify(type)}`, describeErrors(reply.check.Errors(data)))
    }
    const envelope = { type: replyType(type), data, id }
    await this.write(reply === null ? JSON.stringify(envelope) : reply.serialize(envelope))
  }

  /** Sends a server message of the contract; every failure is a rejection, never a throw. */
  async send (type: string, data: unknown): Promise<void> {
    const entry = this.compiled.server.get(type)
    if (entry === undefined) throw new errors.FST_RT_UNKNOWN_OUTGOING_TYPE(JSON.stringify(type))
    if (this.settings.validateOutgoing && !entry.check.Check(data)) {
      throw new errors.FST_RT_INVALID_OUTGOING(`message ${JSON.stringify(type)}`, describeErrors(entry.check.Errors(data)))
    }
    let text: string
    try {
      text = entry.serialize({ type, data })
    } catch (error) {
      // The serializer follows the schema, so unchecked data can still miss a required field.
      throw new errors.FST_RT_INVALID_OUTGOING(`message ${JSON.stringify(type)}`, (error as Error).message, { cause: error })
    }
    await this.connection.sendText(text)
  }

  /** Runs a handler or lifecycle hook; a failure is logged and answered. Returns false if it failed. */
  private async guard (name: string, run: () => unknown): Promise<boolean> {
    try {
      await run()
      return true
    } catch (error) {
      await this.failed(name, error as Error, undefined)
      return false
    }
  }

  private async failed (type: string, error: Error, id: Id | undefined): Promise<void> {
    if (error instanceof MessageError) {
      await this.write(errorEnvelope(error, id))
    } else {
      this.request.log.error({ err: error, messageType: type }, 'realtime: message handler failed')
      await this.sendError(new errors.FST_RT_HANDLER_FAILED(JSON.stringify(type)), id)
    }
    await this.report(error)
  }

  private async failedLate (type: string, error: Error): Promise<void> {
    this.request.log.error({ err: error, messageType: type }, 'realtime: message handler failed after its request timed out')
    await this.report(error)
  }

  private async report (error: Error): Promise<void> {
    const handler = this.handlers.error
    if (handler === undefined) return
    try {
      await handler.call(this.app, this.context, error)
    } catch (failure) {
      this.request.log.error({ err: failure }, 'realtime: error handler failed')
    }
  }

  /** Answers bad input by the route's policy; returns false when the connection is being closed. */
  private async refuse (error: Error & { code: string }, id: Id | undefined, list?: ValidationErrors): Promise<boolean> {
    if (this.settings.onInvalid === 'reply') {
      await this.write(errorEnvelope(error, id, list))
      return true
    }
    const reason = error.message.length > 120 ? `${error.message.slice(0, 117)}...` : error.message
    await this.connection.close({ code: this.settings.onInvalid, reason })
    return false
  }

  private sendError (error: Error & { code: string }, id: Id | undefined): Promise<void> {
    return this.write(errorEnvelope(error, id))
  }

  /** Writes unless the connection is gone: a reply to a client that left is not an error. */
  private async write (text: string): Promise<void> {
    if (this.connection.closed) return
    await this.connection.sendText(text)
  }
}

function describeErrors (list: Iterable<{ path: string, message: string }>): string {
  const parts: string[] = []
  for (const error of list) {
    parts.push(`${error.path === '' ? '/' : error.path} ${error.message}`)
    if (parts.length === 3) break
  }
  return parts.join('; ')
}
