import { execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './helpers.js'
import { redisServerPath, spawnServer, stopServer } from './redis-server.js'

const run = promisify(execFile)

/** How long the cluster may take to form, or a replica to take over, before the test fails instead of hanging. */
const settleTimeoutMs = 30_000

/** A node's failure detection time: short, so a failover takes a few seconds, not the default 15. */
const nodeTimeoutMs = 1000

export interface ClusterNodeInfo {
  readonly port: number
  readonly id: string
  /** A master that is not marked failed. */
  readonly master: boolean
  /** The id of the master it replicates, for a replica that is not marked failed; null otherwise. */
  readonly replicaOf: string | null
  /** Slot ranges of a master, `[first, last]` each. */
  readonly slots: ReadonlyArray<readonly [number, number]>
}

/** A Redis Cluster of 3 masters (and their replicas) that this process started on 127.0.0.1, without persistence. */
export interface RedisCluster {
  /** `redis://127.0.0.1:<port>` of every node started (the startup nodes to give a client). */
  readonly urls: readonly string[]
  /** An admin connection to one node (closed on teardown). */
  node (port: number): Redis
  /** The cluster's nodes as a live node sees them. */
  nodes (): Promise<ClusterNodeInfo[]>
  /** The master serving a slot. */
  masterOf (slot: number): Promise<ClusterNodeInfo>
  /** Moves a slot, with its keys, to another master: SETSLOT IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE. */
  moveSlot (slot: number, to: ClusterNodeInfo): Promise<void>
  /** Whether a live replica follows this master (so killing it fails over). */
  hasReplica (master: ClusterNodeInfo): Promise<boolean>
  /** SIGKILLs a master and resolves once one of its replicas serves its slots. */
  killMaster (master: ClusterNodeInfo): Promise<void>
  /** The process ids of the nodes still running (for their CPU time). */
  pids (): number[]
  stop (): Promise<void>
}

/** Why a cluster cannot be started here, or null when it can: it needs redis-server 7 (sharded pub/sub) and redis-cli. */
export async function clusterUnavailable (): Promise<string | null> {
  const server = redisServerPath()
  if (server === null) return '!!! redis-server is not installed: the Redis Cluster tests are skipped (.ci/run installs it)'
  try {
    const { stdout } = await run(server, ['--version'])
    const major = Number(/v=(\d+)/.exec(stdout)?.[1])
    if (!(major >= 7)) return `!!! redis-server ${stdout.trim()} has no sharded pub/sub: the Redis Cluster tests need Redis 7`
    await run('redis-cli', ['--version'])
  } catch (error) {
    return `!!! redis-cli could not run (${(error as Error).message}): the Redis Cluster tests are skipped (Debian's redis-server brings it in redis-tools)`
  }
  return null
}

async function freePorts (count: number): Promise<number[]> {
  const ports = new Set<number>()
  while (ports.size < count) {
    const port = await freePort()
    if (port < 55_000) ports.add(port)
  }
  return [...ports]
}

/** Polls `probe` until it returns true, for at most settleTimeoutMs: a cluster settles by gossip, which has no event to wait on. */
async function until (what: string, probe: () => Promise<boolean>, state?: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + settleTimeoutMs
  for (;;) {
    if (await probe().catch(() => false)) return
    if (Date.now() > deadline) {
      const seen = await state?.().catch((error: Error) => error.message)
      throw new Error(`the Redis Cluster did not settle within ${settleTimeoutMs} ms: ${what}${seen === undefined ? '' : `; it is:\n${seen}`}`)
    }
    await sleep(50)
  }
}

function parseNodes (text: string): ClusterNodeInfo[] {
  return text.trim().split('\n').map((line) => {
    const [id, address, flags, master, , , , , ...slots] = line.split(' ') as [string, string, string, string, ...string[]]
    const failed = flags.includes('fail')
    return {
      id,
      port: Number(/:(\d+)@/.exec(address)?.[1]),
      master: flags.includes('master') && !failed,
      replicaOf: flags.includes('slave') && !failed ? master : null,
      slots: slots.filter((range) => !range.startsWith('[')).map((range) => {
        const [first, last] = range.split('-').map(Number) as [number, number?]
        return [first, last ?? first] as const
      })
    }
  })
}

/** What stops the cluster: a tap test, or a benchmark's own list of things to stop. */
export interface Owner {
  teardown: (stop: () => Promise<void>) => void
}

/**
 * Starts a cluster of 3 masters, each with `replicas` replicas (1 unless given), that `owner` stops
 * on teardown.
 */
export async function startRedisCluster (owner: Owner, { replicas = 1 }: { replicas?: number } = {}): Promise<RedisCluster> {
  const binary = redisServerPath() as string
  const dir = mkdtempSync(path.join(tmpdir(), 'frt-cluster-'))
  const count = 3 * (1 + replicas)
  const ports = await freePorts(2 * count)
  const children = new Map<number, ChildProcess>()
  const admins = new Map<number, Redis>()
  const dead = new Set<number>()
  const cluster: RedisCluster = {
    urls: ports.slice(0, count).map((port) => `redis://127.0.0.1:${port}`),
    node (port) {
      let admin = admins.get(port)
      if (admin === undefined) admins.set(port, admin = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }))
      return admin
    },
    async nodes () {
      const live = ports.slice(0, count).find((port) => !dead.has(port)) as number
      return parseNodes(await cluster.node(live).cluster('NODES') as string)
    },
    async masterOf (slot) {
      const nodes = await cluster.nodes()
      return nodes.find((node) => node.master && node.slots.some(([first, last]) => slot >= first && slot <= last)) as ClusterNodeInfo
    },
    async moveSlot (slot, to) {
      const from = await cluster.masterOf(slot)
      const source = cluster.node(from.port)
      const target = cluster.node(to.port)
      await target.cluster('SETSLOT', slot, 'IMPORTING', from.id)
      await source.cluster('SETSLOT', slot, 'MIGRATING', to.id)
      for (;;) {
        const keys = await source.cluster('GETKEYSINSLOT', slot, 100) as string[]
        if (keys.length === 0) break
        await source.migrate('127.0.0.1', to.port, '', 0, 5000, 'KEYS', ...keys)
      }
      await target.cluster('SETSLOT', slot, 'NODE', to.id)
      await source.cluster('SETSLOT', slot, 'NODE', to.id)
      for (const node of await cluster.nodes()) {
        if (node.master && node.id !== from.id && node.id !== to.id) await cluster.node(node.port).cluster('SETSLOT', slot, 'NODE', to.id)
      }
    },
    async hasReplica (master) {
      return (await cluster.nodes()).some((node) => node.replicaOf === master.id)
    },
    async killMaster (master) {
      dead.add(master.port)
      admins.get(master.port)?.disconnect()
      admins.delete(master.port)
      await stopServer(children.get(master.port) as ChildProcess, 'SIGKILL')
      const slot = master.slots[0]?.[0] as number
      await until(`a replica of ${master.port} takes slot ${slot} over`, async () => {
        const now = await cluster.masterOf(slot)
        return now !== undefined && now.port !== master.port && await clusterOk(cluster.node(now.port))
      }, async () => await cluster.node(ports.slice(0, count).find((port) => !dead.has(port)) as number).cluster('NODES') as string)
    },
    pids () {
      return [...children.values()].filter((child) => child.exitCode === null && child.signalCode === null).map((child) => child.pid as number)
    },
    async stop () {
      for (const admin of admins.values()) admin.disconnect()
      admins.clear()
      await Promise.all([...children.values()].map((child) => stopServer(child, 'SIGKILL')))
      rmSync(dir, { recursive: true, force: true })
    }
  }
  owner.teardown(() => cluster.stop())
  await Promise.all(ports.slice(0, count).map(async (port, i) => {
    children.set(port, await spawnServer(binary, port, [
      '--cluster-enabled', 'yes', '--cluster-port', String(ports[count + i]), '--cluster-config-file', `nodes-${port}.conf`,
      '--cluster-node-timeout', String(nodeTimeoutMs), '--dir', dir,
      // Any replica may take over, however long ago it last heard its master: on a busy machine a
      // replica that fell behind must not keep the failover test waiting.
      '--cluster-replica-validity-factor', '0'
    ], dir))
  }))
  await run('redis-cli', ['--cluster', 'create', ...ports.slice(0, count).map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(replicas), '--cluster-yes'])
  await until(`every node sees the cluster ok, with 3 masters and ${count - 3} replicas`, async () => {
    for (const port of ports.slice(0, count)) {
      if (!await clusterOk(cluster.node(port))) return false
      const nodes = parseNodes(await cluster.node(port).cluster('NODES') as string)
      if (nodes.filter((node) => node.master).length !== 3 || nodes.length !== count) return false
    }
    return true
  })
  return cluster
}

async function clusterOk (node: Redis): Promise<boolean> {
  return (await node.cluster('INFO') as string).includes('cluster_state:ok')
}
