import { mkdirSync } from "node:fs"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll } from "@effect/vitest"
import { type Browser, chromium } from "playwright-core"

/** The machine's Chromium (.ci/run installs it when missing); playwright-core never downloads a browser. */
const CHROMIUM = "/usr/bin/chromium"

/** Launches Chromium for the enclosing `describe` and closes it after its tests. Read `current` inside tests. */
export const chromiumBrowser = (): { readonly current: Browser } => {
  let browser: Browser | undefined
  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] })
  })
  afterAll(async () => {
    await browser?.close()
  })
  return {
    get current() {
      if (browser === undefined) throw new Error("launched by beforeAll: read it inside a test")
      return browser
    },
  }
}

/**
 * A second origin on loopback (another port than the service's), serving whatever `handle` answers: the pages
 * that embed the tracker, as a customer's site would. Stopped after the enclosing `describe`'s tests.
 */
export const fixtureOrigin = (handle: (request: IncomingMessage, response: ServerResponse) => void) => {
  const server = createServer(handle)
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  })
  afterAll(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    get url() {
      const address = server.address()
      if (address === null || typeof address === "string") throw new Error("listening only inside tests")
      return `http://127.0.0.1:${address.port}`
    },
  }
}

/** Where a test leaves what CI keeps (screenshots): $ARTIFACTS_DIR when set, the system's temp dir otherwise. */
export const artifactPath = (name: string): string => {
  const dir = process.env.ARTIFACTS_DIR || join(tmpdir(), "click-clusters-artifacts")
  mkdirSync(dir, { recursive: true })
  return join(dir, name)
}
