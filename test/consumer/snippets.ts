import { readdir, readFile } from 'node:fs/promises'
import { basename, join } from 'node:path'

/** One TypeScript code block of the README or a page of docs/, as a file of the consumer app. */
export interface Snippet {
  /** The Markdown file it comes from, relative to the repository. */
  readonly doc: string
  /** The line of its opening fence (1-based). */
  readonly line: number
  /** Its file name in the app: the name its first line gives (`// server.ts`), else one made from where it is. */
  readonly file: string
  readonly code: string
}

// A block that starts with `// name.ts` (maybe followed by a colon and a comment) is that file, so
// that blocks can import each other (`./contract.js`) as the docs show. Names are unique across
// the docs: one flat folder holds them all.
const NAMED = /^\/\/ ([a-z0-9.-]+\.ts)(?::|$)/
const FENCE = /^```(\w*)\s*$/

/** The `ts` code blocks of one Markdown text. */
export function snippetsOf (doc: string, text: string): Snippet[] {
  const snippets: Snippet[] = []
  const lines = text.split('\n')
  let open: { lang: string, line: number, body: string[] } | null = null
  lines.forEach((line, index) => {
    const fence = FENCE.exec(line)
    if (open === null) {
      if (fence !== null) open = { lang: fence[1] as string, line: index + 1, body: [] }
      return
    }
    if (fence === null || fence[1] !== '') {
      open.body.push(line)
      return
    }
    if (open.lang === 'ts' || open.lang === 'typescript') {
      const code = open.body.join('\n') + '\n'
      const named = NAMED.exec(open.body[0] ?? '')
      const file = named?.[1] ?? `${basename(doc, '.md').toLowerCase()}-line-${open.line}.ts`
      snippets.push({ doc, line: open.line, file, code })
    }
    open = null
  })
  if (open !== null) throw new Error(`${doc}: a code fence is not closed`)
  return snippets
}

/** The Markdown files a user reads: README.md and every page of docs/. */
export async function docFiles (root: string): Promise<string[]> {
  const pages = (await readdir(join(root, 'docs'))).filter((name) => name.endsWith('.md')).sort()
  return ['README.md', ...pages.map((name) => `docs/${name}`)]
}

/** Every `ts` block of the README and docs/, checked for names given twice. */
export async function docSnippets (root: string): Promise<Snippet[]> {
  const snippets: Snippet[] = []
  for (const doc of await docFiles(root)) snippets.push(...snippetsOf(doc, await readFile(join(root, doc), 'utf8')))
  const seen = new Map<string, Snippet>()
  for (const snippet of snippets) {
    const other = seen.get(snippet.file)
    if (other !== undefined) {
      throw new Error(`${snippet.file} is the name of two code blocks: ${other.doc}:${other.line} and ${snippet.doc}:${snippet.line}`)
    }
    seen.set(snippet.file, snippet)
  }
  return snippets
}
