// Issue 4, scenario 5: the generated Kotlin bindings against a real klad-server.
// Two drafters and an official work offline, reconnect and converge; then two
// phones sync over a peer link (an in-memory pipe) with the server out of reach.
// Prints "N passed, N failed" last; exits non-zero on any failure.
//
// Arguments: <klad-server binary> <scratch directory>

import java.io.File
import java.util.concurrent.TimeUnit
import uniffi.klad_ffi.*

var passed = 0
var failed = 0

fun check(what: String, ok: Boolean) {
    if (ok) {
        passed++
        println("ok   $what")
    } else {
        failed++
        println("FAIL $what")
    }
}

fun <T> eventually(what: String, timeoutMs: Long = 60_000, f: () -> T?): T? {
    val deadline = System.currentTimeMillis() + timeoutMs
    while (System.currentTimeMillis() < deadline) {
        val v = f()
        if (v != null && v != false) return v
        java.lang.Thread.sleep(50)
    }
    println("timed out waiting for $what")
    return null
}

fun field(json: String, name: String): String =
    Regex("\"$name\"\\s*:\\s*\"([^\"]+)\"").find(json)?.groupValues?.get(1)
        ?: error("no $name in $json")

class Server(val bin: String, val data: File) {
    var proc: Process? = null
    var addr = "127.0.0.1:0"

    fun start() {
        val serverFile = File(data, "server.json")
        serverFile.delete()
        val pb = ProcessBuilder(bin, "--data", data.path, "--listen", addr)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .redirectError(ProcessBuilder.Redirect.DISCARD)
        pb.environment()["RUST_LOG"] = "warn"
        proc = pb.start()
        val pid = proc!!.pid().toString()
        addr = eventually("the server to start", 30_000) {
            val text = if (serverFile.exists()) serverFile.readText() else ""
            if (Regex("\"pid\"\\s*:\\s*$pid\\b").containsMatchIn(text)) field(text, "listen") else null
        } ?: error("the server did not start")
    }

    fun stop() {
        proc?.destroyForcibly()?.waitFor(10, TimeUnit.SECONDS)
    }

    fun cli(vararg args: String): String {
        val p = ProcessBuilder(bin, "--data", data.path, *args).start()
        val out = p.inputStream.bufferedReader().readText()
        p.waitFor(60, TimeUnit.SECONDS)
        check(p.exitValue() == 0) { "klad-server ${args.toList()} failed" }
        return out
    }

    val url get() = "http://$addr"
}

fun bodyOf(p: KladProcess): String? = p.articles().firstOrNull()?.body

/** One direction of an in-memory peer link; frames wait until the other side exists. */
class Pipe : PeerTransport {
    private val lock = Object()
    private var other: KladPeerLink? = null
    private val waiting = mutableListOf<ByteArray>()
    @Volatile var closedReason: String? = null

    fun connect(link: KladPeerLink) {
        val queued = synchronized(lock) { other = link; waiting.toList().also { waiting.clear() } }
        queued.forEach { link.receive(it) }
    }

    override fun send(frame: ByteArray) {
        val to = synchronized(lock) { other ?: run { waiting.add(frame); null } } ?: return
        try { to.receive(frame) } catch (e: KladException.Network) { /* the other side has ended */ }
    }

    override fun closed(reason: String) { closedReason = reason }
}

fun main(args: Array<String>) {
    val server = Server(args[0], File(args[1], "server").apply { mkdirs() })
    val phones = File(args[1], "phones")
    val clients = mutableListOf<KladClient>()
    try {
        server.start()
        val pid = field(server.cli("process", "create", "--title", "Groen in de wijk", "--json"), "process_id")
        fun join(name: String, role: String): Pair<KladClient, KladProcess> {
            val token = field(server.cli("invite", "--process", pid, "--name", name, "--role", role, "--json"), "token")
            val c = KladClient.open(File(phones, name).path)
            clients.add(c)
            return c to c.join(server.url, token, 30_000uL)
        }
        val (annaC, anna) = join("Anna", "drafter")
        val (bramC, bram) = join("Bram", "drafter")
        val (olgaC, olga) = join("Olga", "official")
        check("three phones joined", anna.summary().role == Role.DRAFTER && olga.summary().role == Role.OFFICIAL)

        val body = "De gemeente zorgt voor groen in de wijk."
        val art = anna.createArticle(null, "Groen", body)
        check("the article reaches every phone",
            eventually("the article") { listOf(bram, olga).all { bodyOf(it) == body } } == true)

        listOf(annaC, bramC, olgaC).forEach { it.setOnline(false) }
        "Ook ".forEachIndexed { i, ch -> anna.editBody(art, i.toUInt(), 0u, ch.toString()) }
        check("typing shows before it is committed", bodyOf(anna) == "Ook $body")
        bram.editBody(art, (body.length - 1).toUInt(), 1u, ", elke straat.")
        bram.commit()
        val start = body.indexOf("groen")
        val thread = olga.comment(art, start.toUInt(), (start + 5).toUInt(), "Welk groen bedoelen jullie?")
        fun refusal(): KladException.NotAllowed? = try {
            olga.editBody(art, 0u, 0u, "x"); null
        } catch (e: KladException.NotAllowed) {
            e
        }
        check("the library speaks Dutch until told otherwise", language() == "nl")
        val nl = refusal()
        check("an official's text edit is refused with core's reason code", nl?.code == "role-may-not")
        check("... and its Dutch sentence",
            nl?.sentence == "Als ambtenaar mag u dit niet: de tekst van de artikelen wijzigen. Alleen inwoners mogen dat.")
        setLanguage("en-GB")
        val en = refusal()
        setLanguage("nl")
        check("after switching to English, the English sentence",
            en?.code == "role-may-not" &&
                en.sentence == "As an official, you cannot change the article text: only drafters can.")
        check("offline phones are not all on the server",
            listOf(anna, bram, olga).all { !it.syncStatus().allOnServer && !it.syncStatus().online })

        listOf(annaC, bramC, olgaC).forEach { it.setOnline(true) }
        val expected = "Ook De gemeente zorgt voor groen in de wijk, elke straat."
        val converged = eventually("convergence") {
            val ts = listOf(anna, bram, olga).map { it.threads(null) }
            if (listOf(anna, bram, olga).all { bodyOf(it) == expected } && ts.all { it.size == 1 }) ts else null
        }
        check("all phones converge to the same text", converged != null)
        if (converged != null) {
            check("identical thread views on every phone", converged[0] == converged[1] && converged[1] == converged[2])
            val t = converged[0][0]
            val anchor = t.anchor
            check("the comment is still on its passage",
                t.id == thread && anchor is Anchor.Live && anchor.text == "groen")
        }
        check("every phone is all on the server",
            eventually("acknowledgements") { listOf(anna, bram, olga).all { it.syncStatus().allOnServer } } == true)

        // Phone to phone: Anna and Bram, offline, sync over a peer link.
        listOf(annaC, bramC).forEach { it.setOnline(false) }
        anna.editBody(art, 0u, 0u, "Echt: ")
        anna.commit()
        val ab = Pipe()
        val ba = Pipe()
        val annaLink = anna.openPeerLink(ab)
        val bramLink = bram.openPeerLink(ba)
        ab.connect(bramLink)
        ba.connect(annaLink)
        check("the peer link is up, with the other phone's member",
            eventually("the link") {
                annaLink.status().state == PeerLinkState.CONNECTED && bramLink.status().peer?.name == "Anna"
            } == true)
        check("Anna's offline edit reaches Bram over the link, with no server",
            eventually("the edit over the link") { bodyOf(bram) == "Echt: $expected" } == true &&
                !bram.syncStatus().online)
        annaLink.end()
        check("ending the link tells both sides",
            eventually("the link to end") {
                bramLink.status().state == PeerLinkState.CLOSED && ab.closedReason != null && ba.closedReason != null
            } == true)
        annaLink.close()
        bramLink.close()
    } catch (e: Throwable) {
        failed++
        println("FAIL unexpected ${e::class.simpleName}: ${e.message}")
    } finally {
        clients.forEach { it.shutdown() }
        server.stop()
    }
    println("$passed passed, $failed failed")
    System.exit(if (failed == 0) 0 else 1)
}
