import { readFile } from 'node:fs/promises'

/**
 * The first option table (`| option | default | meaning |`) under `heading` in `doc` (relative to
 * the repository): option name -> its cells. Throws when the heading or the table is missing, or
 * when a name has two rows, so a moved or broken table fails loudly rather than checking nothing.
 */
export async function optionTable (doc: string, heading: string): Promise<Map<string, string[]>> {
  const lines = (await readFile(new URL(`../../${doc}`, import.meta.url), 'utf8')).split('\n')
  const start = lines.indexOf(heading)
  if (start === -1) throw new Error(`${doc} has no heading ${JSON.stringify(heading)}`)
  const end = lines.findIndex((line, index) => index > start && line.startsWith('#'))
  const header = lines.findIndex((line, index) => index > start && line.startsWith('| option | default |'))
  if (header === -1 || (end !== -1 && header > end)) throw new Error(`${doc} has no option table under ${JSON.stringify(heading)}`)
  const rows = new Map<string, string[]>()
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break
    const cells = line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim())
    const name = /^`([A-Za-z.]+)`$/.exec(cells[0] ?? '')?.[1]
    if (name === undefined) throw new Error(`${doc}: a row of the table under ${JSON.stringify(heading)} names no option: ${line}`)
    if (rows.has(name)) throw new Error(`${doc}: ${name} has two rows in the table under ${JSON.stringify(heading)}`)
    rows.set(name, cells)
  }
  return rows
}
