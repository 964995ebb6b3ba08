// A client none of us wrote: the JavaScript automerge-repo with its websocket
// adapter, talking to klad-server. Driven by tests/interop.rs.
//
// Usage: node client.mjs <ws url with ?token=...> <peer id> <process doc id> <text doc id> <marker>
//
// It reads the process and text documents, prints them as one JSON line
// ("READ {...}"), inserts <marker> at the start of the first article's body,
// prints "EDITED <article id>", then stays connected until stdin closes (so
// the change can reach the server) or 60 seconds pass.
import { Repo, splice } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const [url, peerId, processDoc, textDoc, marker] = process.argv.slice(2)
if (!marker) {
  console.error("usage: node client.mjs <url> <peer id> <process doc> <text doc> <marker>")
  process.exit(2)
}

const repo = new Repo({
  network: [new WebSocketClientAdapter(url)],
  peerId,
})

const withTimeout = (p, ms, what) =>
  Promise.race([
    p,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ])

// The first lookups can run before the websocket handshake is done, when
// the server is not yet a peer; wait for the network, then retry a few times.
async function find(id) {
  let last
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      return await withTimeout(repo.find(`automerge:${id}`), 10000, id)
    } catch (e) {
      last = e
      await new Promise(r => setTimeout(r, 200))
    }
  }
  throw last
}

try {
  await withTimeout(repo.networkSubsystem.whenReady(), 20000, "network")
  const processHandle = await find(processDoc)
  const textHandle = await find(textDoc)
  const p = processHandle.doc()
  const t = textHandle.doc()
  const articles = Object.entries(t.articles ?? {}).filter(([, a]) => !a.removed)
  console.log(
    "READ " +
      JSON.stringify({
        title: p.title,
        phase: p.phase,
        members: Object.keys(p.members ?? {}).length,
        articles: articles.map(([id, a]) => ({ id, body: String(a.body) })),
      }),
  )
  if (articles.length === 0) throw new Error("the text has no articles")
  const [id] = articles[0]
  textHandle.change(d => {
    splice(d, ["articles", id, "body"], 0, 0, marker)
  })
  console.log(`EDITED ${id}`)
} catch (e) {
  console.error(`ERROR ${e.message}`)
  process.exit(1)
}

const done = () => process.exit(0)
process.stdin.on("end", done)
process.stdin.on("close", done)
process.stdin.resume()
setTimeout(done, 60000)
