/**
 * Draws bench/ratios.svg from bench/ratios.json: the median ratios to raw ws (with the lowest and
 * highest round) that bench/RESULTS.md reports, one group of bars per measure, lower is better, and
 * each measure's target as a dashed line. Run with `npm run bench:chart` after updating the JSON.
 */
import { readFileSync, writeFileSync } from 'node:fs'

interface Bar {
  readonly label: string
  readonly median: number
  readonly min: number
  readonly max: number
  /** fastify-realtime's own bars are drawn in the accent colour. */
  readonly ours?: boolean
}
interface Group {
  readonly title: string
  /** The target as a ratio (lower is better), if the measure has one. */
  readonly target?: number
  readonly bars: readonly Bar[]
}
interface Chart {
  readonly title: string
  readonly subtitle: string
  readonly groups: readonly Group[]
}

const here = new URL('.', import.meta.url)
const chart = JSON.parse(readFileSync(new URL('ratios.json', here), 'utf8')) as Chart

const WIDTH = 900
const LABEL_RIGHT = 330
const SCALE_MAX = 3
const PLOT = WIDTH - LABEL_RIGHT - 40
const x = (ratio: number): number => LABEL_RIGHT + 8 + Math.min(ratio, SCALE_MAX) / SCALE_MAX * PLOT
const BAR = 14
const GAP = 4
const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const fmt = (ratio: number): string => `${ratio.toFixed(2)}×`

const parts: string[] = []
let y = 60
parts.push(`<text x="10" y="18" class="h">${escape(chart.title)}</text>`)
parts.push(`<text x="10" y="36" class="a">${escape(chart.subtitle)}</text>`)
for (let tick = 0; tick <= SCALE_MAX; tick += 0.5) {
  parts.push(`<text x="${x(tick).toFixed(1)}" y="${y}" text-anchor="middle" class="a">${tick.toFixed(1)}×</text>`)
}
y += 8
const top = y
for (const group of chart.groups) {
  y += 16
  const verdict = group.target === undefined
    ? ''
    : `target ≤ ${group.target}×: ${(group.bars.find((bar) => bar.ours === true)?.median ?? Infinity) <= group.target ? 'met' : 'missed'}`
  parts.push(`<text x="10" y="${y}" class="h">${escape(group.title)}</text>`)
  if (verdict !== '') parts.push(`<text x="${WIDTH - 10}" y="${y}" class="v" text-anchor="end">${escape(verdict)}</text>`)
  y += 6
  const first = y
  for (const bar of group.bars) {
    parts.push(`<text x="${LABEL_RIGHT}" y="${y + BAR - 3}" text-anchor="end">${escape(bar.label)}</text>`)
    const width = x(bar.median) - x(0)
    parts.push(`<rect x="${x(0).toFixed(1)}" y="${y}" width="${width.toFixed(1)}" height="${BAR}" fill="${bar.ours === true ? '#2b6cb0' : '#9aa5b1'}"/>`)
    // The spread of the rounds: a whisker from the lowest to the highest ratio.
    const mid = y + BAR / 2
    parts.push(`<line x1="${x(bar.min).toFixed(1)}" y1="${mid}" x2="${x(bar.max).toFixed(1)}" y2="${mid}" class="w"/>`)
    if (Math.max(bar.median, bar.max) > SCALE_MAX) {
      // Off the scale: the figure goes inside the bar's end.
      parts.push(`<text x="${(x(SCALE_MAX) - 4).toFixed(1)}" y="${y + BAR - 3}" text-anchor="end" fill="#fff">${fmt(bar.median)} (off the scale)</text>`)
    } else {
      parts.push(`<text x="${(x(Math.max(bar.median, bar.max)) + 4).toFixed(1)}" y="${y + BAR - 3}" class="a">${fmt(bar.median)}</text>`)
    }
    y += BAR + GAP
  }
  if (group.target !== undefined) {
    parts.push(`<line x1="${x(group.target).toFixed(1)}" y1="${first - 4}" x2="${x(group.target).toFixed(1)}" y2="${y}" class="t"/>`)
  }
  y += 4
}
parts.push(`<line x1="${x(1).toFixed(1)}" y1="${top}" x2="${x(1).toFixed(1)}" y2="${y}" class="base"/>`)
parts.push(`<text x="${(x(1) + 3).toFixed(1)}" y="${y + 12}" class="a">raw ws = 1</text>`)
const height = y + 24

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">
  <title>${escape(chart.title)}</title>
  <style>
    .h { font-weight: bold; }
    .v { font-style: italic; }
    .a { fill: #555; }
    .base { stroke: #222; stroke-width: 1.5; }
    .w { stroke: #222; stroke-width: 1; }
    .t { stroke: #c53030; stroke-width: 2; stroke-dasharray: 4 3; }
  </style>
  <rect width="100%" height="100%" fill="#fff"/>
  ${parts.join('\n  ')}
</svg>
`
writeFileSync(new URL('ratios.svg', here), svg)
console.log(`bench/ratios.svg: ${chart.groups.length} groups, ${height} px high`)
