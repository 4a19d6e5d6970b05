import { createServer } from "node:http"

/**
 * The ceiling for one Node process on this machine: `node:http` reading and parsing the same JSON body as the
 * service and answering a constant JSON, with no framework, validation or storage. Started as a child process by
 * the harness (so it does not share a core's event loop with the load generator); prints its port when listening.
 */
const answer = Buffer.from(JSON.stringify({ cluster_idx: 0, is_new: false }))
const version = Buffer.from(JSON.stringify({ version: 0 }))

const server = createServer((request, response) => {
  if (request.method === "GET") {
    // Readiness probe of the harness, as on the service.
    response.writeHead(200, { "content-type": "application/json", "content-length": version.length })
    response.end(version)
    return
  }
  const chunks: Array<Buffer> = []
  request.on("data", (chunk: Buffer) => chunks.push(chunk))
  request.on("end", () => {
    let status = 200
    try {
      const body: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8"))
      // The same minimum of work on the body as any real handler: look at the fields.
      if (typeof body !== "object" || body === null || !("page_uuid" in body) || !("coordinates" in body))
        status = 422
    } catch {
      status = 400
    }
    response.writeHead(status, { "content-type": "application/json", "content-length": answer.length })
    response.end(answer)
  })
})

server.listen(Number(process.argv[2] ?? 0), "127.0.0.1", () => {
  const address = server.address()
  if (typeof address === "object" && address !== null) process.stdout.write(`listening ${address.port}\n`)
})
process.on("SIGTERM", () => server.close(() => process.exit(0)))
