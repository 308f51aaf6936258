import type { Broker, HistoryLimits } from '../../lib/hub/broker.js'
import type { RedisBroker as RedisBrokerClass, RedisBrokerOptions } from '../../lib/hub/redis/index.js'
import type { BrokerConformanceOptions } from '../../lib/testing/index.js'

/**
 * RedisBrokers for the conformance suite: each new one on `options()` (a key prefix of its own
 * there) with the check's history limits, a peer with its broker's options (the same rooms).
 */
export function redisBrokers (RedisBroker: typeof RedisBrokerClass, name: string, options: () => RedisBrokerOptions): BrokerConformanceOptions {
  const optionsOf = new WeakMap<Broker, RedisBrokerOptions>()
  const make = (made: RedisBrokerOptions): RedisBrokerClass => {
    const broker = new RedisBroker(made)
    optionsOf.set(broker, made)
    return broker
  }
  return {
    name,
    create: (limits: HistoryLimits) => make({ ...options(), history: limits }),
    peer: (broker: Broker) => make(optionsOf.get(broker) as RedisBrokerOptions)
  }
}
