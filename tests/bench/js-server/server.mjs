// The baseline of the load benchmark (scripts/bench-load.sh, tests/src/bin/klad-load.rs):
// a plain JavaScript automerge-repo sync server, as its documentation sets one up:
// the websocket server adapter, storage on the file system, no authentication.
//
// Usage: node server.mjs <data directory> [port]
//
// It listens on 127.0.0.1 (port 0, the default, picks a free one) and prints
// "LISTENING <port>" on stdout once it accepts connections. SIGTERM or SIGINT
// closes the sockets, flushes storage and exits 0.
//
// Like klad-server it never announces documents to clients, but it lets any
// client fetch (and write) any document by its id: that is the share policy a
// plain sync server needs for clients to find documents another client created.
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

const [dataDir, portArg] = process.argv.slice(2)
if (!dataDir) {
  console.error("usage: node server.mjs <data directory> [port]")
  process.exit(2)
}
const port = Number(portArg ?? 0)
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`the port ${portArg} is not a port number; give 0 to 65535 (0 picks a free one)`)
  process.exit(2)
}

const wss = new WebSocketServer({ host: "127.0.0.1", port, backlog: 2048 })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dataDir),
  peerId: "js-sync-server",
  shareConfig: {
    announce: async () => false,
    access: async () => true,
  },
})

wss.on("listening", () => {
  console.log(`LISTENING ${wss.address().port}`)
})
wss.on("error", e => {
  console.error(`the websocket server failed: ${e.message}`)
  process.exit(1)
})

let stopping = false
async function stop() {
  if (stopping) return
  stopping = true
  try {
    await repo.shutdown()
  } catch (e) {
    console.error(`shutting down the repo failed: ${e.message}`)
  }
  process.exit(0)
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
