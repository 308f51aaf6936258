import type { FastifyInstance, FastifyReply } from 'fastify'
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { stringify } from 'yaml'
import { errors } from '../errors.js'
import { asyncApiDocument, type AsyncApiDocument, type AsyncApiOptions, type ContractRoute } from './document.js'

// Serves the document as @fastify/swagger and @fastify/swagger-ui do for HTTP: JSON and YAML at
// `<route>.json` and `<route>.yaml`, and a page at `<route>` that renders it with the AsyncAPI
// React component's standalone bundle, served from node_modules (the page works offline).

/** The `asyncapi` option of `register()`: the document's info, where to serve it, and the page. */
export interface AsyncApiServeOptions extends AsyncApiOptions {
  /** The page's path; the document is at this path plus `.json` and `.yaml`. @default '/asyncapi' */
  route?: string
  /** Serve the HTML page (needs the optional peer `@asyncapi/react-component`). @default true */
  page?: boolean
}

const PEER = '@asyncapi/react-component'

/** The standalone bundle's folder in the peer; FST_RT_ASYNCAPI_PAGE_PEER when it is not installed. */
export function pageAssets (resolve: (id: string) => string = createRequire(import.meta.url).resolve): { script: string, style: string } {
  let script: string
  try {
    script = resolve(`${PEER}/browser/standalone/index.js`)
  } catch (error) {
    throw new errors.FST_RT_ASYNCAPI_PAGE_PEER((error as Error).message.split('\n')[0], { cause: error })
  }
  return { script, style: join(dirname(script), '..', '..', 'styles', 'default.min.css') }
}

function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`)
}

/** The page: the bundle renders the document, which is inlined (so nothing is fetched twice). */
export function pageHtml (document: AsyncApiDocument, base: string): string {
  // `<` escaped, so no string in the document can close the script element.
  const json = JSON.stringify(document).replace(/</g, '\\u003c')
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(document.info.title)}</title>
<link rel="stylesheet" href="./${base}/default.min.css">
</head>
<body>
<div id="asyncapi"></div>
<script src="./${base}/standalone.js"></script>
<script>
AsyncApiStandalone.render({ schema: ${json}, config: { show: { sidebar: true } } }, document.getElementById('asyncapi'))
</script>
</body>
</html>
`
}

/**
 * Adds the routes. The document is built once the app is ready (every route is registered by then),
 * so a contract it cannot describe fails `ready()` with FST_RT_ASYNCAPI_UNSUPPORTED.
 */
export function serveAsyncApi (fastify: FastifyInstance, routes: readonly ContractRoute[], options: AsyncApiServeOptions): void {
  const { route = '/asyncapi', page = true, ...info } = options
  const assets = page ? pageAssets() : null
  let document: AsyncApiDocument | null = null
  let yaml = ''
  let html = ''
  const files = new Map<string, Buffer>()
  fastify.addHook('onReady', async () => {
    document = asyncApiDocument(routes, info)
    yaml = stringify(document, { aliasDuplicateObjects: false })
    html = pageHtml(document, route.slice(route.lastIndexOf('/') + 1))
  })
  const send = (type: string, body: () => string | object) => async (_request: unknown, reply: FastifyReply) => {
    await reply.type(type).send(body())
  }
  fastify.get(`${route}.json`, send('application/json; charset=utf-8', () => document as AsyncApiDocument))
  fastify.get(`${route}.yaml`, send('application/yaml; charset=utf-8', () => yaml))
  if (assets === null) return
  fastify.get(route, send('text/html; charset=utf-8', () => html))
  const file = (name: string, path: string, type: string): void => {
    fastify.get(`${route}/${name}`, async (_request, reply) => {
      // Read once, on the first request: the bundle is about 3 MB.
      let body = files.get(name)
      if (body === undefined) {
        body = await readFile(path)
        files.set(name, body)
      }
      await reply.type(type).header('cache-control', 'public, max-age=3600').send(body)
    })
  }
  file('standalone.js', assets.script, 'text/javascript; charset=utf-8')
  file('default.min.css', assets.style, 'text/css; charset=utf-8')
}
