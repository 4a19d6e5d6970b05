import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { isDeepStrictEqual } from "node:util"
import { beforeAll, describe, expect, it, onTestFinished } from "@effect/vitest"
import { type CaseStep, loadCases, runId, send } from "../support/Cases.ts"
import {
  checkRestartedServer,
  checkStoredLog,
  client,
  LoadPage,
  type LoadStats,
  type LoadTarget,
  type Op,
  post,
  seedLoad,
  sleep,
} from "../support/ClickLoad.ts"
import { type RunnerProcess, runnerProcesses } from "../support/RunnerProcess.ts"
import { freshStorage } from "../support/ServedStorage.ts"
import { spawnScript } from "../support/ServerProcess.ts"
import { latestClusters, watchEvents } from "../support/ServerSentEvents.ts"
import { storageModes } from "../support/StorageModes.ts"

/**
 * Cluster mode: pages sharded over runner processes (@effect/cluster) on the machine's Postgres. Every runner
 * serves the whole API; these tests send to all of them, as a load balancer would, and check the answers and the
 * stored log exactly as the single-process crash test does (test/support/ClickLoad.ts).
 */

/** CLIENTS concurrent clients through the balancer, each with its share of the pages. */
const clients = (balancer: Balancer, pages: ReadonlyArray<LoadPage>, stats: LoadStats) =>
  Array.from({ length: CLIENTS }, (_, n) =>
    client(
      balancer,
      pages.filter((_, i) => i % CLIENTS === n),
      stats,
    ),
  )

describe("cluster mode's configuration", () => {
  it("refuses to start a runner without DATABASE_URL, saying why", async () => {
    const dir = mkdtempSync(join(tmpdir(), "cluster-config-"))
    try {
      const child = spawnScript("src/main.ts", [], {
        RUNNER_ADDRESS: "127.0.0.1:1",
        DATA_DIR: dir,
        PORT: "0",
        HOST: "127.0.0.1",
      })
      let output = ""
      child.stderr?.on("data", (d: Buffer) => {
        output += d.toString()
      })
      child.stdout?.on("data", (d: Buffer) => {
        output += d.toString()
      })
      const code = await new Promise<number | null>((resolve) => child.once("exit", resolve))
      expect(code).not.toBe(0)
      expect(output).toContain("RUNNER_ADDRESS (cluster mode) needs DATABASE_URL")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

/** Sends clients' requests round-robin over the runners in it, as a load balancer would; ends the load. */
class Balancer implements LoadTarget {
  private runners: Array<RunnerProcess> = []
  private next = 0
  private finished = false
  constructor(runners: ReadonlyArray<RunnerProcess>) {
    this.runners = [...runners]
  }
  /** Takes a runner out before it is stopped (a load balancer's health check would, a moment later). */
  remove(runner: RunnerProcess) {
    this.runners = this.runners.filter((r) => r !== runner)
  }
  add(runner: RunnerProcess) {
    this.runners.push(runner)
  }
  finish() {
    this.finished = true
  }
  async ready() {
    if (this.finished) return null
    const runner = this.runners[this.next++ % this.runners.length]
    return runner?.url ?? null
  }
  answered() {}
}

const PAGES = 48
/** How many of the pages a map watches through the kill, join and stop. */
const WATCHED = 6
const CLIENTS = 16
/** Small, so that a page moving to another runner is usually recovered from a snapshot plus a few clicks. */
const SNAPSHOT_EVERY = 8

/** How the requests of a stretch of the load ended, by outcome, from the pages' records. */
const outcomesOf = (pages: ReadonlyArray<LoadPage>, from: ReadonlyMap<LoadPage, number>) => {
  const counts: Record<string, number> = {}
  for (const page of pages)
    for (const op of page.ops.slice(from.get(page) ?? 0) as ReadonlyArray<Op>) {
      const key = op.answer._tag === "Ok" ? "200" : op.answer.why.startsWith("503") ? "503" : op.answer.why
      counts[key] = (counts[key] ?? 0) + 1
    }
  return counts
}

const marks = (pages: ReadonlyArray<LoadPage>) => new Map(pages.map((p) => [p, p.ops.length]))

/** Time until every page answers a prediction with 200 through `url` (each page asked until it does). */
const untilAllAnswer = async (url: string, pages: ReadonlyArray<LoadPage>, start: number) => {
  await Promise.all(
    pages.map(async (page) => {
      while ((await post(url, "/predict_cluster", page.uuid, 0.5, 0.5))._tag !== "Ok") await sleep(20)
    }),
  )
  return Date.now() - start
}

/**
 * Resolves once every runner reaches pages on every runner: each has answered a prediction for 64 fresh pages
 * (each asked until it answers 200). Each runner holds its own shards once ready, but its view of who holds the
 * others may lag a moment behind the runner list (a message meanwhile waits for its shard, up to DB_TIMEOUT, and
 * answers 503: CI saw one on a busy machine).
 */
const settled = (runners: ReadonlyArray<RunnerProcess>) =>
  Promise.all(
    runners.map(async (runner, r) => {
      const run = runId()
      for (let i = 0; i < 64; i++)
        while (
          (await post(runner.url, "/predict_cluster", `settle-${run}-${r}-${i}`, 0.5, 0.5))._tag !== "Ok"
        )
          await sleep(20)
    }),
  )

const postgres = storageModes().find((mode) => mode.name === "postgres")

// Only with DATABASE_URL: the runners share that server (each test run in a database of its own).
if (postgres !== undefined) {
  describe("runners sharing the machine's Postgres", () => {
    const fresh = freshStorage(postgres.make)
    const runners = runnerProcesses()
    let cluster: Array<RunnerProcess> = []
    const env = () => ({ ...fresh.current.env, SNAPSHOT_EVERY: String(SNAPSHOT_EVERY) })

    beforeAll(async () => {
      // One first, so it migrates the database alone; then two more beside it.
      const first = await runners.start(env())
      cluster = [first, ...(await Promise.all([runners.start(env()), runners.start(env())]))]
      await Promise.all(cluster.map((r) => r.untilReady()))
      // The acceptance cases compare exact answers, so they start once the runners have settled.
      await settled(cluster)
    })

    it("answers the acceptance cases sent round-robin across three runners exactly as one process does", async () => {
      const run = runId()
      let k = 0
      let steps = 0
      const mismatches: Array<string> = []
      // The cases concurrently (each on pages of its own), each in its order; step after step to the next runner.
      await Promise.all(
        loadCases().map(async ({ name, steps: sequence }) => {
          for (const [i, step] of sequence.entries()) {
            const runner = cluster[k++ % cluster.length]!
            const { status, data } = await send(runner.url, step as CaseStep, `${run}-${name}`)
            steps++
            if (
              status !== step.response_code ||
              (status === 200 && !isDeepStrictEqual(data, step.response_data))
            )
              mismatches.push(
                `${name} step ${i} ${step.req_name} via ${runner.url}: ${status} ${JSON.stringify(data)}, expected ${step.response_code} ${JSON.stringify(step.response_data)}`,
              )
          }
        }),
      )
      console.log(`cluster acceptance: ${steps} steps over ${cluster.length} runners`)
      expect(mismatches.slice(0, 5)).toEqual([])
      // Every runner served some pages itself and forwarded others.
      for (const runner of cluster) {
        const metrics = await (await fetch(`${runner.url}/metrics`)).text()
        expect(metrics).toMatch(/cluster_messages_forwarded_total\{outcome="ok"\} [1-9]/)
        expect(metrics).toMatch(/cluster_shards_owned [1-9]/)
      }
    })

    it("answers an idempotency key's first answer from every runner, and 409 for its reuse with another click", async () => {
      const page = `${runId()}/keyed`
      const key = "0b6f3c1e-8f1a-4c2e-9d7a-2f4b5c6d7e8f"
      const save = async (runner: RunnerProcess, x: number) => {
        const response = await fetch(`${runner.url}/save_click_and_predict_cluster`, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": key },
          body: JSON.stringify({ page_uuid: page, coordinates: { x, y: 0.5 } }),
        })
        return { status: response.status, body: (await response.json()) as unknown }
      }
      const first = await save(cluster[0]!, 0.3)
      expect(first).toEqual({ status: 200, body: { cluster_idx: 0, is_new: true } })
      for (const runner of cluster) {
        expect(await save(runner, 0.3)).toEqual(first)
        expect((await save(runner, 0.7)).status).toBe(409)
      }
      const stored = await fresh.current.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
        [page],
      )
      expect(stored[0]?.n).toBe(1)
    })

    it("tells a page's live cluster changes to its watchers on every runner, whichever runner stores the clicks", async () => {
      const page = `${runId()}/watched`
      const path = `/pages/${encodeURIComponent(page)}`
      // One watcher per runner: the page's owner tells its own, the others read the owner's clusters as they change.
      const watching = new AbortController()
      onTestFinished(() => watching.abort())
      const watchers = await Promise.all(
        cluster.map((runner) => watchEvents(runner.url, page, watching.signal)),
      )
      const spots = [
        [0.2, 0.2],
        [0.8, 0.3],
        [0.5, 0.8],
      ] as const
      for (let i = 0; i < 12; i++) {
        const [x, y] = spots[i % spots.length]!
        const runner = cluster[i % cluster.length]!
        expect(
          await post(runner.url, "/save_click_and_predict_cluster", page, x + i / 1000, y),
        ).toMatchObject({
          _tag: "Ok",
        })
      }
      const listed = (await (await fetch(`${cluster[0]!.url}${path}/clusters`)).json()) as {
        clusters: ReadonlyArray<{ cluster_idx: number; count: number }>
      }
      expect(listed.clusters.map((c) => c.count)).toEqual([4, 4, 4])
      const told = await Promise.all(
        watchers.map((w) =>
          w.until((events) => isDeepStrictEqual(latestClusters(events), listed.clusters), {
            expected: listed.clusters,
          }),
        ),
      )
      for (const events of told) {
        expect(latestClusters(events)).toEqual(listed.clusters)
        // Each cluster told as created once, first; its counts only grow.
        expect(
          events.filter((e) => e.event === "cluster.created").map((e) => JSON.parse(e.data).cluster_idx),
        ).toEqual([0, 1, 2])
        for (const idx of [0, 1, 2]) {
          const counts = events.map((e) => JSON.parse(e.data)).filter((c) => c.cluster_idx === idx)
          expect(counts.map((c) => c.count)).toEqual([...counts.map((c) => c.count)].sort((a, b) => a - b))
        }
      }
    })

    it("keeps every acknowledged click once, and answers as the replay, across a kill -9, a join and a graceful stop under load", async () => {
      const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
      seedLoad(seed)
      const run = runId()
      const pages = Array.from({ length: PAGES }, (_, i) => new LoadPage(`${run}/${i}`))
      const stats: LoadStats = { acknowledged: 0, unexpected: [] }
      const [a, b, c] = cluster as [RunnerProcess, RunnerProcess, RunnerProcess]
      const balancer = new Balancer([a, b, c])
      // Maps of some of the pages, open on the runner that stays throughout: their pages move while watched.
      const watched = pages.slice(0, WATCHED)
      const watching = new AbortController()
      onTestFinished(() => watching.abort())
      const maps = await Promise.all(watched.map((page) => watchEvents(a.url, page.uuid, watching.signal)))
      const load = clients(balancer, pages, stats)
      const report: Array<string> = []
      try {
        await sleep(1500)
        // kill -9: its shards' locks die with its Postgres session; the others take them once its heartbeat is stale.
        let mark = marks(pages)
        balancer.remove(c)
        const killed = Date.now()
        expect(await c.stop("SIGKILL")).toBe(null)
        const recoveryMs = await untilAllAnswer(a.url, pages, killed)
        await sleep(1000)
        report.push(
          `kill -9: every page answered again after ${recoveryMs} ms; clients saw ${JSON.stringify(outcomesOf(pages, mark))}`,
        )

        // A fourth runner joins: shards rebalance to it while the load goes on.
        mark = marks(pages)
        const joining = Date.now()
        const d = await runners.start(env())
        await d.untilReady()
        balancer.add(d)
        report.push(`join: ready after ${Date.now() - joining} ms`)
        await sleep(1500)
        report.push(`meanwhile clients saw ${JSON.stringify(outcomesOf(pages, mark))}`)

        // A graceful stop: its pages are snapshotted and its shards released.
        mark = marks(pages)
        balancer.remove(b)
        const stopping = Date.now()
        expect(await b.stop("SIGTERM")).toBe(0)
        report.push(`graceful stop: exited in ${Date.now() - stopping} ms`)
        await sleep(1500)
        report.push(`meanwhile clients saw ${JSON.stringify(outcomesOf(pages, mark))}`)
        cluster = [a, d]
      } finally {
        balancer.finish()
        await Promise.all(load)
      }

      // Each map was told its page's clusters as they are now, though its page changed owner meanwhile.
      await Promise.all(
        watched.map(async (page, i) => {
          const listed = (await (
            await fetch(`${a.url}/pages/${encodeURIComponent(page.uuid)}/clusters`)
          ).json()) as { clusters: ReadonlyArray<unknown> }
          await maps[i]!.until((events) => isDeepStrictEqual(latestClusters(events), listed.clusters), {
            expected: listed.clusters,
          })
        }),
      )
      const { verdict, replays, stored } = await checkStoredLog(fresh.current.query, run, pages)
      // Answers after the moves: every page through each remaining runner, equal to the replay of its log.
      let probes = 0
      for (const runner of cluster) probes += await checkRestartedServer(runner.url, pages, replays, verdict)
      console.log(
        `cluster kill/join/stop (seed ${seed}): ${verdict.acknowledged} acknowledged clicks verified, ` +
          `${verdict.unacknowledged} unacknowledged (${verdict.unacknowledgedStored} of them stored), ${stored} stored; ` +
          `${verdict.predictsChecked} predictions under load and ${probes} after checked, ` +
          `${verdict.snapshotsChecked} snapshots checked. ${report.join("; ")}`,
      )
      expect(stats.unexpected.slice(0, 10)).toEqual([])
      expect(verdict.errors.slice(0, 20)).toEqual([])
      expect(verdict.acknowledged).toBeGreaterThan(200)
    })

    it("loses no acknowledged click and gives no answer off the replay while a runner is paused (SIGSTOP) and resumed", async () => {
      const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
      seedLoad(seed)
      const run = runId()
      const pages = Array.from({ length: PAGES }, (_, i) => new LoadPage(`${run}/${i}`))
      const stats: LoadStats = { acknowledged: 0, unexpected: [] }
      const paused = cluster[cluster.length - 1]!
      // The balancer keeps sending to the paused runner: it accepts connections and answers nothing.
      const balancer = new Balancer(cluster)
      const load = clients(balancer, pages, stats)
      const report: Array<string> = []
      try {
        await sleep(1500)
        let mark = marks(pages)
        const stopped = Date.now()
        paused.signal("SIGSTOP")
        // Until the others have noticed: its heartbeat has expired (CLUSTER_LOCK_EXPIRATION, 3 s) and they have
        // recomputed the ring (CLUSTER_ASSIGNMENTS_REFRESH); its Postgres session, and so its shard locks, live on.
        const port = paused.runnerAddress.split(":")[1]
        while (
          (
            await fresh.current.query<{ n: number }>(
              "SELECT count(*)::int AS n FROM cluster_runners WHERE address LIKE $1 AND last_heartbeat > now() - interval '3 seconds'",
              [`%:${port}`],
            )
          )[0]?.n !== 0
        ) {
          if (Date.now() - stopped > 30_000) throw new Error("the paused runner's heartbeat never expired")
          await sleep(200)
        }
        await sleep(1000)
        paused.signal("SIGCONT")
        const resumed = Date.now()
        report.push(
          `paused ${resumed - stopped} ms; meanwhile clients saw ${JSON.stringify(outcomesOf(pages, mark))}`,
        )
        mark = marks(pages)
        const answeredMs = await untilAllAnswer(cluster[0]!.url, pages, resumed)
        report.push(`every page answered ${answeredMs} ms after SIGCONT`)
        await sleep(2000)
        report.push(`after the resume clients saw ${JSON.stringify(outcomesOf(pages, mark))}`)
      } finally {
        paused.signal("SIGCONT")
        balancer.finish()
        await Promise.all(load)
      }
      const { verdict, replays, stored } = await checkStoredLog(fresh.current.query, run, pages)
      let probes = 0
      for (const runner of cluster) probes += await checkRestartedServer(runner.url, pages, replays, verdict)
      console.log(
        `cluster pause (seed ${seed}): ${verdict.acknowledged} acknowledged clicks verified, ` +
          `${verdict.unacknowledged} unacknowledged (${verdict.unacknowledgedStored} of them stored), ${stored} stored; ` +
          `${verdict.predictsChecked} predictions under load and ${probes} after checked. ${report.join("; ")}`,
      )
      expect(stats.unexpected.slice(0, 10)).toEqual([])
      expect(verdict.errors.slice(0, 20)).toEqual([])
      expect(verdict.acknowledged).toBeGreaterThan(100)
    })

    it("does not serve a forwarded click late: its owner, paused past the sender's DB_TIMEOUT, does not store it on resuming", async () => {
      const [via, owner] = cluster as [RunnerProcess, RunnerProcess]
      const forwardedOk = async () => {
        const text = await (await fetch(`${via.url}/metrics`)).text()
        return Number(/^cluster_messages_forwarded_total\{outcome="ok"\} (\d+)/m.exec(text)?.[1] ?? 0)
      }
      // A page of `owner`'s: one `via` forwards (with two runners, about every other page).
      const run = runId()
      let page: string | undefined
      for (let i = 0; page === undefined && i < 50; i++) {
        const before = await forwardedOk()
        await post(via.url, "/predict_cluster", `${run}/late-${i}`, 0.5, 0.5)
        if ((await forwardedOk()) > before) page = `${run}/late-${i}`
      }
      if (page === undefined) throw new Error("no page of the other runner among 50")
      owner.signal("SIGSTOP")
      let answer: Awaited<ReturnType<typeof post>>
      try {
        answer = await post(via.url, "/save_click_and_predict_cluster", page, 0.4, 0.4)
      } finally {
        owner.signal("SIGCONT")
      }
      expect(answer).toEqual({ _tag: "Unavailable" })
      // The owner reads the message once resumed: give it time to, then the click must not be there.
      await owner.untilReady()
      await sleep(1000)
      const count = async () =>
        (
          await fresh.current.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
            [page],
          )
        )[0]?.n
      expect(await count()).toBe(0)
      const again = await post(via.url, "/save_click_and_predict_cluster", page, 0.4, 0.4)
      expect(again).toEqual({ _tag: "Ok", body: { cluster_idx: 0, is_new: true } })
      expect(await count()).toBe(1)
    })
  })

  describe("a page's rate limit with runners sharing the machine's Postgres", () => {
    const fresh = freshStorage(postgres.make)
    const runners = runnerProcesses()
    const LIMIT = 6

    it("lets a page take RATE_LIMIT_PER_PAGE clicks a window in all, whichever runners they reach", async () => {
      const env = { ...fresh.current.env, RATE_LIMIT_PER_PAGE: String(LIMIT), RATE_LIMIT_WINDOW: "1 hour" }
      const first = await runners.start(env)
      const pair = [first, await runners.start(env)]
      await Promise.all(pair.map((r) => r.untilReady()))
      await settled(pair)
      const page = `${runId()}/limited`
      const answers: Array<{ status: number; retryAfter: string | null }> = []
      for (let i = 0; i < 2 * LIMIT; i++) {
        const response = await fetch(`${pair[i % 2]!.url}/save_click_and_predict_cluster`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ page_uuid: page, coordinates: { x: 0.5, y: 0.5 } }),
        })
        answers.push({ status: response.status, retryAfter: response.headers.get("retry-after") })
        await response.body?.cancel()
      }
      // The page's owner counted every click, the forwarded ones too: the first LIMIT stored, the rest refused.
      expect(answers.map((a) => a.status)).toEqual([
        ...Array.from({ length: LIMIT }, () => 200),
        ...Array.from({ length: LIMIT }, () => 429),
      ])
      for (const { retryAfter } of answers.slice(LIMIT)) expect(Number(retryAfter)).toBeGreaterThanOrEqual(1)
      // A batch through either runner: the page's clicks are each refused 429, another page's stored.
      for (const runner of pair) {
        const response = await fetch(`${runner.url}/clicks`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify([
            { page_uuid: page, coordinates: { x: 0.2, y: 0.2 } },
            { page_uuid: `${page}/other`, coordinates: { x: 0.2, y: 0.2 } },
          ]),
        })
        expect(response.status).toBe(200)
        const body = (await response.json()) as ReadonlyArray<{ error?: { status: number } }>
        expect(body.map((entry) => entry.error?.status ?? 200)).toEqual([429, 200])
      }
      const stored = await fresh.current.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM clicks WHERE page_uuid = $1",
        [page],
      )
      expect(stored[0]?.n).toBe(LIMIT)
    })
  })
}
