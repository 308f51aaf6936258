import type { TSchema } from '@sinclair/typebox'
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler'
import fastJson from 'fast-json-stringify'
import { errors } from '../errors.js'
import { clientSpec, isTypeBoxSchema, type Contract } from './contract.js'
import { compileClientCheck, type ClientCheck } from './client-check.js'
import { ERROR, REPLY_SUFFIX, replyType, SYSTEM_PREFIX } from '../protocol.js'

/** Names the handler map uses for lifecycle handlers, so no message type may take them. */
export const LIFECYCLE = new Set(['open', 'close', 'error', 'binary'])

export interface CompiledClientType {
  readonly check: ClientCheck
  readonly reply: CompiledOutgoing | null
  /** `<type>:reply`, built once. */
  readonly replyType: string
}

export interface CompiledOutgoing {
  readonly check: TypeCheck<TSchema>
  /** Serializes a whole envelope `{ type, data, id? }` of this message type. */
  readonly serialize: (envelope: { type: string, data: unknown, id?: string | number }) => string
}

export interface CompiledContract {
  readonly client: ReadonlyMap<string, CompiledClientType>
  readonly server: ReadonlyMap<string, CompiledOutgoing>
  /** The check of a client's presence `meta` in `$join`, when the contract has a `presence` schema. */
  readonly presence: ClientCheck | null
}

function compileOutgoing (schema: TSchema): CompiledOutgoing {
  // The schema drives serialization: measured faster than JSON.stringify in bench/serialize.ts.
  const serialize = fastJson({
    type: 'object',
    properties: {
      type: { type: 'string' },
      data: schema,
      id: { anyOf: [{ type: 'string' }, { type: 'number' }] }
    },
    required: ['type', 'data']
  } as Parameters<typeof fastJson>[0]) as CompiledOutgoing['serialize']
  return { check: TypeCompiler.Compile(schema), serialize }
}

function schemaOf (where: string, value: unknown): TSchema {
  if (!isTypeBoxSchema(value)) {
    throw new errors.FST_RT_INVALID_CONTRACT(`${where} must be a TypeBox schema (Type.Object(...), Type.String(), ...)`)
  }
  return value
}

/** Compiles every schema of `contract` once, at registration. */
export function compileContract (contract: Contract): CompiledContract {
  if (typeof contract !== 'object' || contract === null) throw new errors.FST_RT_INVALID_CONTRACT('expected { client, server }')
  for (const side of ['client', 'server'] as const) {
    const map = (contract as unknown as Record<string, unknown>)[side]
    if (typeof map !== 'object' || map === null || Array.isArray(map)) {
      throw new errors.FST_RT_INVALID_CONTRACT(`"${side}" must be an object of message types`)
    }
  }
  const client = new Map<string, CompiledClientType>()
  for (const [type, spec] of Object.entries(contract.client)) {
    if (LIFECYCLE.has(type)) throw new errors.FST_RT_INVALID_CONTRACT(`client message type "${type}" is reserved for a lifecycle handler`)
    if (type.startsWith(SYSTEM_PREFIX)) throw new errors.FST_RT_INVALID_CONTRACT(`client message type "${type}" is reserved: names starting with "$" belong to the plugin`)
    const { data, reply } = clientSpec(spec)
    client.set(type, {
      check: compileClientCheck(`client.${type}`, schemaOf(`client.${type}`, data)),
      reply: reply === undefined ? null : compileOutgoing(schemaOf(`client.${type}.reply`, reply)),
      replyType: replyType(type)
    })
  }
  const server = new Map<string, CompiledOutgoing>()
  for (const [type, schema] of Object.entries(contract.server)) {
    // The client tells replies and errors apart from server messages by these names.
    if (type.startsWith(SYSTEM_PREFIX)) throw new errors.FST_RT_INVALID_CONTRACT(`server message type "${type}" is reserved: names starting with "$" belong to the plugin`)
    if (type === ERROR || type.endsWith(REPLY_SUFFIX)) {
      throw new errors.FST_RT_INVALID_CONTRACT(`server message type "${type}" is reserved for ${type === ERROR ? 'error envelopes' : 'replies'}`)
    }
    server.set(type, compileOutgoing(schemaOf(`server.${type}`, schema)))
  }
  const presence = contract.presence === undefined ? null : compileClientCheck('presence', schemaOf('presence', contract.presence))
  return { client, server, presence }
}
