const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** The subprotocols a client offered, in its order; null when the header is malformed. */
export function parseOffer (header: string | undefined): string[] | null {
  if (header === undefined) return []
  const offered = header.split(',').map((item) => item.trim())
  return offered.every((item) => TOKEN.test(item)) ? offered : null
}

/** The first client-offered protocol the route supports (aiohttp's rule), or null. */
export function chooseProtocol (offered: readonly string[], supported: readonly string[]): string | null {
  for (const protocol of offered) {
    if (supported.includes(protocol)) return protocol
  }
  return null
}
