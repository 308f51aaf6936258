/**
 * Full-jitter exponential backoff: a random delay in [0, min(capMs, baseMs · 2^attempt)), so clients
 * that lost the same server do not come back in lockstep. `random` is injectable for tests.
 */
export function backoffDelay (attempt: number, baseMs: number, capMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 30))
  return Math.floor(random() * ceiling)
}
