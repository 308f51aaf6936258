import type { Broker, HistoryLimits } from '../hub/broker.js'
import type { PresenceStore } from '../hub/presence.js'
import { defaultHubSettings, type HubSettings } from '../hub/hub.js'
import { historyLimits } from './history.js'
import { defaultSettings, normalizeOptions, type RouteSettings } from './route.js'
import { check } from './server-checks.js'
import type { AsyncApiServeOptions } from '../asyncapi/serve.js'
import { defaultGuardSettings, guardSettings, type GuardSettings } from './guard.js'

/**
 * Every key `register()` takes, by what reads it: a new plugin option goes in here (and in its
 * reader), nowhere else. What no row names is an unknown route option, refused as such.
 */
export const pluginKeys = Object.freeze({
  /** Fastify itself reads these from register() options; they are not ours to check. */
  fastify: Object.freeze(['prefix', 'logLevel', 'logSerializers']),
  /** Route defaults, overridable per route (route.ts). */
  route: Object.freeze(Object.keys(defaultSettings)),
  /** Rooms bounds of the hub. */
  hub: Object.freeze(Object.keys(defaultHubSettings)),
  /** Bounds on handshakes and connections, and log redaction. */
  guard: Object.freeze(Object.keys(defaultGuardSettings)),
  /** Where rooms and presence live, and the metrics route. */
  plugin: Object.freeze(['broker', 'presence', 'history', 'metricsRoute', 'asyncapi'])
})

/** The checked options of one registration of the plugin. */
export interface PluginSettings {
  readonly route: RouteSettings
  readonly hub: HubSettings
  readonly guard: GuardSettings
  /** A broker given in `broker`, or null for the default MemoryBroker. */
  readonly broker: Broker | null
  /** A store given in `presence`, or null for the broker's own (else a MemoryPresence). */
  readonly presence: PresenceStore | null
  /** Of the default MemoryBroker. */
  readonly history: HistoryLimits
  readonly metricsRoute: string | null
  /** Where and how to serve the AsyncAPI document, or null. */
  readonly asyncapi: AsyncApiServeOptions | null
}

const notRoute = new Set<string>([...pluginKeys.fastify, ...pluginKeys.hub, ...pluginKeys.guard, ...pluginKeys.plugin])

function hubSettings (options: Record<string, unknown>): HubSettings {
  // Every hub setting is a positive integer.
  const names = Object.keys(defaultHubSettings) as Array<keyof HubSettings>
  return Object.freeze(Object.fromEntries(names.map((name) => [name, check.optionalInteger(name, options[name], 1, Number.MAX_SAFE_INTEGER, defaultHubSettings[name])]))) as unknown as HubSettings
}

function brokerOf (value: unknown): Broker | null {
  if (value === undefined) return null
  const broker = value as Partial<Broker> | null
  if (typeof broker?.publish !== 'function' || typeof broker.attach !== 'function') {
    check.fail('broker', 'a Broker (MemoryBroker, RedisBroker or your own)', value)
  }
  return broker as Broker
}

function presenceOf (value: unknown): PresenceStore | null {
  if (value === undefined) return null
  const presence = value as Partial<PresenceStore> | null
  for (const method of ['add', 'remove', 'list', 'count', 'close'] as const) {
    if (typeof presence?.[method] !== 'function') check.fail('presence', 'a PresenceStore (MemoryPresence, a broker\'s presence or your own)', value)
  }
  return presence as PresenceStore
}

function metricsRoute (value: unknown): string | null {
  if (value === undefined) return null
  if (typeof value !== 'string' || !value.startsWith('/')) check.fail('metricsRoute', 'a path starting with "/"', value)
  return value as string
}

const ASYNCAPI_KEYS = ['route', 'page', 'title', 'version', 'description', 'servers']
const SERVER_KEYS = ['host', 'protocol', 'pathname', 'description']

function asyncapiOption (value: unknown): AsyncApiServeOptions | null {
  if (value === undefined || value === false) return null
  if (value === true) return {}
  const options = check.object('asyncapi', value, ASYNCAPI_KEYS, 'true or an object { route?, page?, title?, version?, description?, servers? }')
  const route = options.route
  if (route !== undefined && (typeof route !== 'string' || !route.startsWith('/') || route.endsWith('/'))) {
    check.fail('asyncapi.route', 'a path starting with "/" and not ending with one', route)
  }
  if (options.page !== undefined) check.boolean('asyncapi.page', options.page)
  for (const key of ['title', 'version', 'description'] as const) {
    if (options[key] !== undefined) check.string(`asyncapi.${key}`, options[key])
  }
  if (options.servers !== undefined) {
    const servers = check.object('asyncapi.servers', options.servers, typeof options.servers === 'object' && options.servers !== null ? Object.keys(options.servers) : [], 'an object of servers by name')
    for (const [name, server] of Object.entries(servers)) {
      const entry = check.object(`asyncapi.servers.${name}`, server, SERVER_KEYS, 'an object { host, protocol?, pathname?, description? }')
      check.string(`asyncapi.servers.${name}.host`, entry.host)
      if (entry.protocol !== undefined && entry.protocol !== 'ws' && entry.protocol !== 'wss') check.fail(`asyncapi.servers.${name}.protocol`, '"ws" or "wss"', entry.protocol)
      if (entry.pathname !== undefined) check.string(`asyncapi.servers.${name}.pathname`, entry.pathname)
      if (entry.description !== undefined) check.string(`asyncapi.servers.${name}.description`, entry.description)
    }
  }
  return Object.freeze({ ...options }) as AsyncApiServeOptions
}

/** Checks every option of `register()`; throws FST_RT_INVALID_OPTION on the first problem. */
export function pluginSettings (options: Record<string, unknown>): PluginSettings {
  const own = Object.fromEntries(Object.entries(options).filter(([key]) => !notRoute.has(key)))
  return {
    route: normalizeOptions(own, defaultSettings),
    hub: hubSettings(options),
    guard: guardSettings(options),
    broker: brokerOf(options.broker),
    presence: presenceOf(options.presence),
    // Checked with a broker given too, where it is ignored: a wrong value is a mistake either way.
    history: historyLimits('history', options.history),
    metricsRoute: metricsRoute(options.metricsRoute),
    asyncapi: asyncapiOption(options.asyncapi)
  }
}
