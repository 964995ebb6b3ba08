// The JavaScript automerge-repo writing with a chosen Automerge actor: the
// honest author (its own actor, declared on the URL with &actor=) or a forger
// (another member's actor). Driven by tests/authorship.rs.
//
// Usage: node writer.mjs <ws url> <peer id> <text doc id> <actor hex> <marker>
//
// It finds the text document, inserts <marker> at the start of the first
// article's body in a change written with <actor hex> (the next sequence
// number of that actor in the document), prints "EDITED <seq>", and then
// prints "CLOSED <code> <reason>" if the server closes the websocket. It
// stays until stdin closes, the server closes it, or 60 seconds pass.
import * as A from "@automerge/automerge"
import { Repo, splice } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const [url, peerId, textDoc, actor, marker] = process.argv.slice(2)
if (!marker) {
  console.error("usage: node writer.mjs <url> <peer id> <text doc> <actor hex> <marker>")
  process.exit(2)
}

const adapter = new WebSocketClientAdapter(url)
const repo = new Repo({ network: [adapter], peerId })

const withTimeout = (p, ms, what) =>
  Promise.race([
    p,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms)),
  ])

// Reports the first close of the socket the change went out on, and stops
// (the adapter would reconnect and try again).
function reportClose(socket) {
  socket.addEventListener("close", e => {
    console.log(`CLOSED ${e.code} ${e.reason}`)
    process.exit(0)
  })
}

try {
  await withTimeout(repo.networkSubsystem.whenReady(), 20000, "network")
  let handle
  for (let attempt = 0; attempt < 20 && !handle; attempt++) {
    try {
      handle = await withTimeout(repo.find(`automerge:${textDoc}`), 10000, textDoc)
    } catch {
      await new Promise(r => setTimeout(r, 200))
    }
  }
  if (!handle) throw new Error("the text document was not found")
  const articles = Object.entries(handle.doc().articles ?? {}).filter(([, a]) => !a.removed)
  if (articles.length === 0) throw new Error("the text has no articles")
  const [id] = articles[0]
  reportClose(adapter.socket)
  handle.update(doc =>
    A.change(A.clone(doc, { actor }), d => {
      splice(d, ["articles", id, "body"], 0, 0, marker)
    }),
  )
  const last = A.getLastLocalChange(handle.doc())
  console.log(`EDITED ${last ? A.decodeChange(last).seq : "?"}`)
} catch (e) {
  console.error(`ERROR ${e.message}`)
  process.exit(1)
}

const done = () => process.exit(0)
process.stdin.on("end", done)
process.stdin.on("close", done)
process.stdin.resume()
setTimeout(done, 60000)
