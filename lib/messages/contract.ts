import { Kind, type Static, type TSchema } from '@sinclair/typebox'

/** A client-to-server message: the schema of its `data`, or that schema with a reply schema. */
export type ClientMessageSpec = TSchema | { readonly data: TSchema, readonly reply?: TSchema }

export interface ContractDefinition {
  /** What clients may send: type → schema of `data` (or `{ data, reply }` for requests with a typed reply). */
  readonly client: Readonly<Record<string, ClientMessageSpec>>
  /** What the server may send: type → schema of `data`. */
  readonly server: Readonly<Record<string, TSchema>>
  /** The schema of a room member's presence `meta` (joins are checked against it); without it, meta is `unknown`. */
  readonly presence?: TSchema
}

/** A message contract: define it once, import it on the server as a value and in clients as a type. */
export interface Contract<D extends ContractDefinition = ContractDefinition> {
  readonly client: D['client']
  readonly server: D['server']
  readonly presence?: D['presence']
}

type DataSchema<S> = S extends TSchema ? S : S extends { readonly data: infer T extends TSchema } ? T : never
type ReplySchema<S> = S extends TSchema ? undefined : S extends { readonly reply: infer R extends TSchema } ? R : undefined

/** The client-to-server message types of a contract. */
export type ClientType<C extends Contract> = keyof C['client'] & string
/** The server-to-client message types of a contract. */
export type ServerType<C extends Contract> = keyof C['server'] & string
/** The `data` a client sends with message `K`. */
export type ClientData<C extends Contract, K extends ClientType<C>> = Static<DataSchema<C['client'][K]>>
/** What a request of type `K` is answered with: the reply schema's type, or unknown when it has none. */
export type ReplyData<C extends Contract, K extends ClientType<C>> =
  ReplySchema<C['client'][K]> extends infer R extends TSchema ? Static<R> : unknown
/** What the handler of `K` must return: its reply (maybe a promise) when `K` has a reply schema, else anything. */
export type HandlerResult<C extends Contract, K extends ClientType<C>> =
  ReplySchema<C['client'][K]> extends infer R extends TSchema ? Static<R> | Promise<Static<R>> : unknown
/** The `data` the server sends with message `K`. */
export type ServerData<C extends Contract, K extends ServerType<C>> = Static<C['server'][K]>

/** A room member's presence `meta`: the contract's `presence` schema's type, or unknown without one. */
export type PresenceMeta<C extends Contract> = NonNullable<C['presence']> extends infer P extends TSchema ? Static<P> : unknown

/** One server message of the contract as `{ type, data }`, a union over its types. */
export type ServerMessage<C extends Contract> = { [K in ServerType<C>]: { type: K, data: ServerData<C, K> } }[ServerType<C>]

/** The wire envelope of every message. */
export interface Envelope<T extends string = string, D = unknown> {
  type: T
  data: D
  id?: string | number
}

/** The error envelope a client gets for a bad message or a failed request. */
export interface ErrorEnvelope {
  type: 'error'
  /** `errors` lists validation failures (empty otherwise); `details` comes only from a MessageError. */
  data: { code: string, message: string, errors: Array<{ path: string, message: string }>, details?: unknown }
  id?: string | number
}

/** Identity at run time; keeps the literal types of the maps for handlers, `send()` and clients. */
export function defineContract<const D extends ContractDefinition> (definition: D): Contract<D> {
  return definition
}

/** Whether `value` is a TypeBox schema (checked at registration, so a plain JSON schema is refused early). */
export function isTypeBoxSchema (value: unknown): value is TSchema {
  return typeof value === 'object' && value !== null && typeof (value as Record<symbol, unknown>)[Kind] === 'string'
}

/** Splits a client spec into its data and reply schemas. */
export function clientSpec (spec: unknown): { data: unknown, reply: unknown } {
  if (isTypeBoxSchema(spec)) return { data: spec, reply: undefined }
  if (typeof spec === 'object' && spec !== null && 'data' in spec) {
    return { data: (spec as { data: unknown }).data, reply: (spec as { reply?: unknown }).reply }
  }
  return { data: spec, reply: undefined }
}
