import { existsSync } from "node:fs"
import { mkdir, readFile, writeFile } from "node:fs/promises"
import { cpus, loadavg, totalmem } from "node:os"
import { dirname } from "node:path"
import { Effect } from "effect"
import type { Measurement } from "./Load.ts"
import { BenchError, root } from "./Processes.ts"

/** What the numbers were measured on: they mean little without it. */
export interface MachineFacts {
  readonly cores: number
  readonly cpuModel: string
  readonly memoryGiB: number
  readonly node: string
  readonly date: string
  readonly loadAverageAtStart: ReadonlyArray<number>
}

export const machineFacts = (): MachineFacts => ({
  cores: cpus().length,
  cpuModel: cpus()[0]?.model ?? "unknown",
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  node: process.version,
  date: new Date().toISOString(),
  loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
})

export const machineLine = (m: MachineFacts) =>
  `${m.cores} cores (${m.cpuModel}), ${m.memoryGiB} GiB, Node ${m.node}, ${m.date}; ` +
  `load average at start ${m.loadAverageAtStart.join(" / ")}`

/** The command that was run, as a user would type it. */
export const commandLine = (script: string) => {
  const args = process.argv
    .slice(2)
    .map((a) => (/^[\w./:,=@-]+$/.test(a) ? a : `'${a.replaceAll("'", "'\\''")}'`))
  return ["npm run", script, ...(args.length > 0 ? ["--", ...args] : [])].join(" ")
}

export const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : "–")

export const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2))

export const ratio = (a: number, b: number) => (b > 0 ? a / b : Number.NaN)

/** A Markdown table; also readable as plain text on a terminal. */
export const table = (headers: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  [headers, headers.map(() => "---"), ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n")

/** The columns every measurement shows. */
export const measurementCells = (m: Measurement) => [
  String(m.connections),
  m.rps.toFixed(0),
  ms(m.latencyMs.p50),
  ms(m.latencyMs.p99),
  ms(m.latencyMs.max),
  String(m.errors + m.timeouts),
  String(m.non2xx),
]

export const measurementHeaders = ["conns", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "non-2xx"]

const docsHeader = `# Benchmarks

Measured on loopback with autocannon as a library (load generator and server on the same machine, the server a
child process built with \`tsc\` into \`bench-results/dist\`, LOG_LEVEL=warn). Each section below is rewritten by
the script named in its title; the JSON of the last run is in \`bench-results/\` (not committed). Numbers from a
shared or busy machine are noisy (the load average is recorded with each measurement): compare runs made back to
back on the same machine, and read the ratios to the raw ceiling rather than absolute numbers.

How to run:

- \`npm run bench\`: everything, 10 s per measurement. A quick pass: \`npm run bench -- --duration 3 --warmup 1\`.
  Flags: \`--only a,b,c,d,history\`, \`--connections 1,32,128\`, \`--skip-build\`, \`--postgres URL\` (a server where
  databases may be created and dropped; (d) is skipped when it does not answer), \`--json FILE\`, \`--docs FILE\`
  (\`--docs ''\` leaves this file alone).
- \`npm run bench:memory\`: memory per cluster (2,000,000 rows inserted, 100,000 pages loaded: about 15 minutes on a busy 2-core machine).
  Flags: \`--pages N\`, \`--connections N\`, \`--skip-build\`, \`--postgres URL\`, \`--json FILE\`, \`--docs FILE\`.
- \`npm run gen-clicks -- --pages 1000 --clusters 5 --clicks 100000 --noise 0.02 --out clicks.csv\` and
  \`npm run replay -- clicks.csv --url http://127.0.0.1:8000 --concurrency 32 [--json report.json]\` replay a click
  file with per-page order kept.
`

/**
 * Replaces one script's section of docs/benchmarks.md (between its start and end markers), leaving the other
 * scripts' sections as they are; creates the file when missing.
 */
export const writeDocsSection = (path: string, name: string, content: string) =>
  Effect.tryPromise({
    try: async () => {
      const file = path.startsWith("/") ? path : `${root}${path}`
      const start = `<!-- ${name}:start -->`
      const end = `<!-- ${name}:end -->`
      const before = existsSync(file) ? await readFile(file, "utf8") : docsHeader
      const section = `${start}\n${content.trim()}\n${end}`
      const from = before.indexOf(start)
      const to = before.indexOf(end)
      const after =
        from !== -1 && to > from
          ? `${before.slice(0, from)}${section}${before.slice(to + end.length)}`
          : `${before.trimEnd()}\n\n${section}\n`
      await mkdir(dirname(file), { recursive: true })
      await writeFile(file, after)
    },
    catch: (cause) => new BenchError({ message: `cannot write ${path}: ${String(cause)}` }),
  })

export const writeJson = (path: string, value: unknown) =>
  Effect.tryPromise({
    try: async () => {
      const file = path.startsWith("/") ? path : `${root}${path}`
      await mkdir(dirname(file), { recursive: true })
      await writeFile(file, `${JSON.stringify(value, null, 2)}\n`)
    },
    catch: (cause) => new BenchError({ message: `cannot write ${path}: ${String(cause)}` }),
  })
