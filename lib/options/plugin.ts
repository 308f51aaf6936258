import type { Broker, HistoryLimits } from '../hub/broker.js'
import type { PresenceStore } from '../hub/presence.js'
import { defaultHubSettings, type HubSettings } from '../hub/hub.js'
import { historyLimits } from './history.js'
import { defaultSettings, normalizeOptions, type RouteSettings } from './route.js'
import { check } from './server-checks.js'
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
  plugin: Object.freeze(['broker', 'presence', 'history', 'metricsRoute'])
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
    metricsRoute: metricsRoute(options.metricsRoute)
  }
}
