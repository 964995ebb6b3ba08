#!/usr/bin/env python3
"""The phone benchmark (issue 5, part 5): through the FFI from Python, the time
per local edit and the memory of a phone client holding a process with 50
members and 2,000 contributions, each next to a baseline measured in the same
run on the same machine (ratios, never asserted).

What it does:
  1. starts a real klad-server (release) on 127.0.0.1 with a fresh data directory;
  2. creates a process, invites 50 members (drafters, officials, one facilitator),
     and fills it with 2,000 contributions written by the members themselves,
     each through their own phone client (KladClient), until every client says
     `sync_status().all_on_server`; plus a second process with one member and
     the same articles but nothing else (the memory baseline);
  3. in a fresh Python process per run, opens a fresh phone (new data
     directory) that joins a process and waits until it has everything, then
     reads VmRSS/VmHWM and the data directory's size, times `edit_body`
     keystrokes, `commit`, `comment`, `threads(None)` and `articles()`, and
     times the same number of fsync'd appends to a file (the floor cost of "on
     disk before it returns"). Runs: the full process and the empty process,
     each with the data directory on disk and on tmpfs (/dev/shm, where fsync
     costs nothing), and a last run on the full process that profiles the
     edit loop and the threads view (perf with DWARF stacks; strace for
     syscalls per keystroke) and then types offline, in blocks, to show how
     a keystroke's time grows with unsynced changes;
  4. writes a Markdown report (default target/bench/phone.md).

Usage (scripts/bench-phone.sh builds what it needs and runs this):
  python3 scripts/bench-phone.py [--out target/bench/phone.md]
      [--server-bin target/release/klad-server]
      [--bindings target/klad-ffi-bindings-release/python]
      [--edits 2000] [--comments 200] [--view-calls 20]

Loopback only. Nothing is asserted: the script fails only when a run could not
be made (a server that does not start, a phone that never syncs).
"""

import argparse
import datetime
import gc
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def default_target() -> Path:
    t = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return t if t.is_absolute() else ROOT / t


# ---------------------------------------------------------------- the texts

# A handful of articles of a (made-up, but realistically worded) neighbourhood
# ordinance, in the style of a Dutch APV.
ARTICLES = [
    (
        "Begripsbepalingen",
        "In deze verordening wordt verstaan onder: a. openbare plaats: een plaats als bedoeld in "
        "artikel 1, eerste lid, van de Wet openbare manifestaties; b. weg: een weg als bedoeld in "
        "artikel 1, eerste lid, onder b, van de Wegenverkeerswet 1994; c. groenvoorziening: een voor "
        "het publiek toegankelijk park, plantsoen of andere groenstrook die bij de gemeente in beheer "
        "is; d. bewoner: een ieder die volgens de basisregistratie personen woonachtig is in de wijk; "
        "e. college: het college van burgemeester en wethouders.",
    ),
    (
        "Beheer van het groen",
        "1. Het college draagt zorg voor het onderhoud van de groenvoorzieningen in de wijk en betrekt "
        "de bewoners bij de inrichting daarvan. 2. Bewoners kunnen het college verzoeken een strook "
        "openbaar groen zelf te beheren. Het college beslist binnen acht weken op een dergelijk "
        "verzoek. 3. Het college kan aan een toestemming als bedoeld in het tweede lid voorschriften "
        "verbinden in het belang van de verkeersveiligheid, de toegankelijkheid van de openbare ruimte "
        "en de bescherming van bomen. 4. Het is verboden zonder toestemming van het college een boom "
        "met een stamomtrek van meer dan 60 centimeter, gemeten op een hoogte van 1,30 meter boven het "
        "maaiveld, te vellen of te doen vellen.",
    ),
    (
        "Parkeren in de wijk",
        "1. Het is verboden een voertuig langer dan drie achtereenvolgende dagen op de weg te "
        "parkeren, indien dit voertuig niet wordt gebruikt voor het verkeer. 2. Het is verboden een "
        "kampeermiddel, aanhangwagen of ander voertuig dat niet bestemd is voor personenvervoer op de "
        "weg te parkeren binnen een afstand van 15 meter van een woning. 3. Het eerste en tweede lid "
        "zijn niet van toepassing op voertuigen waarvoor het college ontheffing heeft verleend. 4. Het "
        "college wijst in overleg met de bewoners plaatsen aan waar fietsen en deelscooters worden "
        "gestald.",
    ),
    (
        "Geluidhinder",
        "1. Het is verboden op of aan de weg of in een voor het publiek toegankelijk gebouw geluid te "
        "veroorzaken dat voor een omwonende of voor andere gebruikers van de openbare ruimte hinderlijk "
        "is. 2. Tussen 23.00 uur en 07.00 uur is het verboden in een woning of op een erf muziek ten "
        "gehore te brengen die buiten de woning duidelijk hoorbaar is. 3. De burgemeester kan "
        "ontheffing verlenen van het verbod in het tweede lid voor een buurtfeest of een andere "
        "gelegenheid van tijdelijke aard.",
    ),
    (
        "Afval en zwerfvuil",
        "1. Het is verboden huishoudelijk afval op een andere plaats of op een ander tijdstip aan te "
        "bieden dan door het college is aangewezen. 2. Degene die een evenement of markt organiseert, "
        "ruimt binnen twaalf uur na afloop het zwerfvuil op in een straal van 50 meter rond de "
        "locatie. 3. Het college stelt in overleg met de bewoners jaarlijks een plan op voor het "
        "schoonhouden van de openbare ruimte in de wijk.",
    ),
    (
        "Terrassen",
        "1. Het is verboden zonder vergunning van de burgemeester een terras te exploiteren op de weg. "
        "2. De burgemeester weigert de vergunning indien de vrije doorgang voor voetgangers, "
        "rolstoelgebruikers en hulpdiensten minder dan 1,50 meter bedraagt. 3. Een terras is uiterlijk "
        "om 23.00 uur gesloten; op vrijdag en zaterdag uiterlijk om 01.00 uur.",
    ),
]

# The article the measured phone types into and comments on (the longest).
TARGET_ARTICLE = 1

# (passage, suggested wording) pairs that occur in the articles.
SUGGESTIONS = [
    ("drie", "vijf"),
    ("acht weken", "zes weken"),
    ("23.00 uur", "22.00 uur"),
    ("15 meter", "25 meter"),
    ("twaalf uur", "24 uur"),
    ("1,50 meter", "1,80 meter"),
    ("60 centimeter", "80 centimeter"),
    ("jaarlijks", "elk half jaar"),
    ("zelf te beheren", "samen met de gemeente te beheren"),
    ("hinderlijk", "ernstig hinderlijk"),
]

COMMENTS = [
    "Wat wordt hier precies bedoeld? Graag een voorbeeld uit onze wijk.",
    "Dit is te streng voor gezinnen met kleine kinderen.",
    "Kan dit ook gelden voor de speeltuin aan de Lindelaan?",
    "Wie controleert dit, en wat gebeurt er als iemand zich er niet aan houdt?",
    "In de praktijk gebeurt dit nu al, dus waarom moet het in de verordening?",
    "Graag afstemmen met de bewonerscommissie voordat dit wordt vastgesteld.",
    "Dit sluit niet aan bij wat we op de bewonersavond hebben afgesproken.",
    "Ik mis hier iets over toegankelijkheid voor mensen met een rollator.",
    "Moet hier geen uitzondering komen voor de zaterdagmarkt?",
    "Deze termijn is erg kort voor vrijwilligers.",
    "Is dit in lijn met de landelijke regels?",
    "Goed punt, maar de formulering is voor veel bewoners lastig te lezen.",
]

REPLIES = [
    "Eens, dat hoorde ik op de bewonersavond ook van anderen.",
    "Ik denk dat het juist goed is dat dit erin staat.",
    "Zie ook de opmerking bij het vorige artikel.",
    "Kunnen we hier volgende week op de wijkavond over praten?",
    "De gemeente heeft hier in 2021 al eens onderzoek naar gedaan.",
    "Mijn buren hebben precies dit probleem, dus graag aanpassen.",
    "Dank voor de toelichting, dat maakt het duidelijker.",
    "Ik stel voor om het bij de volgende versie opnieuw te bekijken.",
    "Dit geldt ook voor de Kastanjestraat.",
    "Misschien kan de facilitator dit meenemen naar het overleg.",
]

ANSWER_REASONS = [
    "Overgenomen: de tekst wordt in de volgende versie aangepast.",
    "Deels overgenomen; de termijn blijft, de uitzondering wordt toegevoegd.",
    "Niet overgenomen omdat dit in strijd is met de Wegenverkeerswet 1994.",
    "Voor kennisgeving aangenomen; wordt meegenomen in de evaluatie.",
]

TYPED = (
    "Het college betrekt daarbij in elk geval de bewonersvereniging en de wijkraad, "
    "en maakt de afspraken openbaar op de website van de gemeente. "
)

FIRST = [
    "Anna", "Bram", "Carla", "Daan", "Eva", "Fenna", "Gijs", "Hanna", "Ilse", "Joris",
    "Kees", "Lotte", "Mila", "Noah", "Olga", "Pieter", "Quinten", "Roos", "Sanne", "Thijs",
    "Uma", "Vera", "Willem", "Xander", "Yara", "Zoë", "Ahmed", "Bo", "Chantal", "Dirk",
    "Esra", "Floor", "Gerrit", "Hatice", "Isa", "Jan", "Karim", "Lieke", "Mohamed", "Nina",
    "Omar", "Priya", "Ruben", "Saskia", "Tim", "Ufuk", "Vincent", "Wendy", "Youssef", "Zeynep",
]
LAST = [
    "de Vries", "Jansen", "Bakker", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot",
    "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker", "Brouwer", "de Wit", "Dijkstra",
]

# ---------------------------------------------------------------- helpers


def eventually(what, f, timeout=120.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def proc_status():
    """VmRSS and VmHWM of this process, in KiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def malloc_trim():
    """Returns free heap pages to the system (glibc); the RSS after, or None."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return None
    return proc_status()


def dir_size(path: Path) -> int:
    """Bytes allocated on disk (like `du -s`), and apparent bytes, of a tree."""
    alloc = apparent = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return alloc, apparent


def summary(times):
    """Mean, p50, p99 and max of a list of seconds, in microseconds."""
    s = sorted(times)
    n = len(s)
    p = lambda q: s[min(n - 1, max(0, math.ceil(q * n) - 1))]  # noqa: E731
    return {
        "n": n,
        "mean_us": statistics.fmean(s) * 1e6,
        "p50_us": p(0.50) * 1e6,
        "p99_us": p(0.99) * 1e6,
        "max_us": s[-1] * 1e6,
        "total_s": sum(s),
    }


def fs_type(path: Path) -> str:
    try:
        out = subprocess.run(["df", "--output=fstype", str(path)], capture_output=True, text=True)
        lines = out.stdout.split()
        return lines[-1] if len(lines) > 1 else "?"
    except OSError:
        return "?"


def baseline_record(i):
    """About what one keystroke's write-ahead record holds."""
    return json.dumps(
        {"article": "a" * 36, "heading": False, "pos": 1000 + i % 1000, "delete": 0, "insert": TYPED[i % len(TYPED)]}
    ).encode() + b"\n"


class DurableAppends:
    """The floor of "on disk before it returns", measured in the phone's own
    process on the phone's filesystem: append a small record (about the size of
    one keystroke's write-ahead record) to a file and fsync it. Also the same
    append with sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER), which is what
    sled 0.34 calls on Linux when it flushes (klad-core's SledStore then adds
    an fdatasync). Run in blocks between the blocks of calls being measured, so that
    both see the same disk and the same neighbours."""

    def __init__(self, directory: Path):
        import ctypes

        self.path = directory / f"fsync-baseline-{os.getpid()}.log"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.fsync_times = []
        self.sfr_times = []
        self.i = 0
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        self.offset = 0

    def record(self):
        self.i += 1
        return baseline_record(self.i)

    def block(self, n):
        for _ in range(n):
            rec = self.record()
            t = time.perf_counter()
            os.write(self.fd, rec)
            os.fsync(self.fd)
            self.fsync_times.append(time.perf_counter() - t)
            self.offset += len(rec)
        for _ in range(n):
            rec = self.record()
            t = time.perf_counter()
            os.write(self.fd, rec)
            # SYNC_FILE_RANGE_WAIT_BEFORE | WRITE | WAIT_AFTER
            self.libc.sync_file_range(self.fd, self.offset, len(rec), 1 | 2 | 4)
            self.sfr_times.append(time.perf_counter() - t)
            self.offset += len(rec)

    def close(self):
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def perf_usable() -> bool:
    if not shutil.which("perf"):
        return False
    try:
        r = subprocess.run(["perf", "stat", "-e", "instructions", "true"], capture_output=True, timeout=20)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# ---------------------------------------------------------------- the server


class Server:
    def __init__(self, binary: Path, data: Path):
        self.binary = binary
        self.data = data
        self.proc = None
        self.addr = None
        self.secret = None

    def start(self):
        self.data.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, RUST_LOG=os.environ.get("KLAD_BENCH_LOG", "warn"))
        self.log = open(self.data.parent / "server.log", "ab")
        self.proc = subprocess.Popen(
            [str(self.binary), "--data", str(self.data), "--listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            env=env,
        )
        server_file = self.data / "server.json"

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"klad-server exited with {self.proc.returncode} while starting")
            try:
                v = json.loads(server_file.read_text())
            except (OSError, ValueError):
                return None
            return v["listen"] if v.get("pid") == self.proc.pid else None

        self.addr = eventually("klad-server to start", ready, timeout=30)
        self.secret = (self.data / "admin-secret").read_text().strip()
        return self

    @property
    def url(self):
        return f"http://{self.addr}"

    def api(self, path, body):
        """The facilitation API (what `klad-server process create` and
        `klad-server invite` call), with the operator's admin secret."""
        req = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def create_process(self, title):
        return self.api("/api/processes", {"title": title})["process"]["process_id"]

    def invite(self, pid, name, role):
        # The made-up names repeat beyond 450 members (--members); each is
        # another person, so "again" (the server refuses a name twice without it).
        return self.api(f"/api/processes/{pid}/members", {"name": name, "role": role, "again": True})

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------- seeding


def roles_for(members: int):
    """One facilitator, about a fifth officials, the rest drafters."""
    officials = max(1, round(members * 0.18)) if members > 2 else 0
    drafters = members - 1 - officials
    return ["drafter"] * drafters + ["official"] * officials + ["facilitator"]


def mix(role: str, n: int):
    """How a member's n contributions divide over kinds."""
    if role == "drafter":
        c = round(n * 0.25)
        s = round(n * 0.075)
        return {"comment": c, "suggest": s, "reply": n - c - s, "answer": 0}
    if role == "official":
        c = round(n * 0.10)
        s = round(n * 0.05)
        a = round(n * 0.55)
        return {"comment": c, "suggest": s, "answer": a, "reply": n - c - s - a}
    return {"comment": 0, "suggest": 0, "answer": 0, "reply": n}


def word_ranges(body: str):
    """(start, end) character ranges of words and short phrases of a body."""
    out = []
    i = 0
    words = []
    for w in body.split(" "):
        words.append((i, i + len(w)))
        i += len(w) + 1
    for k, (s, e) in enumerate(words):
        if e - s >= 4:
            out.append((s, e))
        if k + 2 < len(words):
            out.append((s, words[k + 2][1]))
    return out


def seed(server: Server, members: int, contributions: int, workdir: Path, workers: int, log):
    """Creates the full process and the empty (baseline) process. Every
    contribution is written by its author's own phone client."""
    import klad_ffi

    rnd = random.Random(5)
    t0 = time.perf_counter()
    pid = server.create_process("Verordening Groen en Leefbaar, wijk De Kastanjes")
    roles = roles_for(members)
    people = []
    for i, role in enumerate(roles):
        name = f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}"
        inv = server.invite(pid, name, role)
        people.append({"name": name, "role": role, "token": inv["token"], "member": inv["member_id"]})
    per = [contributions // members + (1 if i < contributions % members else 0) for i in range(members)]
    plans = [mix(p["role"], n) for p, n in zip(people, per)]
    invited = time.perf_counter()

    counter = {"n": 0}
    lock = threading.Lock()

    def phone(i, tag=""):
        d = workdir / f"seed-{i}{tag}"
        c = klad_ffi.KladClient.open(str(d))
        p = c.join(server.url, people[i]["token"], 60_000)
        return c, p

    def done(c, p, what):
        eventually(f"{what} to be on the server", lambda: p.sync_status().all_on_server, timeout=120)
        c.shutdown()

    # The first drafter writes the articles (on a phone of their own: a
    # client releases its directory only once Python drops its objects).
    c, p = phone(0, "-articles")
    ids = []
    after = None
    for heading, body in ARTICLES:
        after = p.create_article(after, heading, body)
        ids.append(after)
    done(c, p, "the articles")
    bodies = {a: b for a, (_, b) in zip(ids, ARTICLES)}
    ranges = {a: word_ranges(b) for a, b in bodies.items()}

    def anchor(r):
        a = r.choice(ids)
        s, e = r.choice(ranges[a])
        return a, s, e

    def suggestion(r):
        while True:
            a = r.choice(ids)
            opts = [(old, new) for old, new in SUGGESTIONS if old in bodies[a]]
            if opts:
                old, new = r.choice(opts)
                s = bodies[a].index(old)
                return a, s, s + len(old), new

    def count(k=1):
        with lock:
            counter["n"] += k

    def drafter(i):
        r = random.Random(1000 + i)
        plan = plans[i]
        c, p = phone(i)
        own = []
        for _ in range(plan["comment"]):
            a, s, e = anchor(r)
            own.append(p.comment(a, s, e, r.choice(COMMENTS)))
        for _ in range(plan["suggest"]):
            a, s, e, new = suggestion(r)
            own.append(p.suggest(a, s, e, new, "Voorstel: " + new + "."))
        # Replies go to threads this phone has by now (its own, and the
        # others' that have arrived).
        seen = [t.id for t in p.threads(None)] or own
        for _ in range(plan["reply"]):
            p.reply(r.choice(seen), r.choice(REPLIES))
        count(plan["comment"] + plan["suggest"] + plan["reply"])
        done(c, p, f"{people[i]['name']}'s contributions")

    drafter_ids = [i for i, x in enumerate(people) if x["role"] == "drafter"]
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(drafter, drafter_ids))
    drafters_done = time.perf_counter()
    drafter_threads = sum(plans[i]["comment"] + plans[i]["suggest"] for i in drafter_ids)

    def responder(i):
        r = random.Random(2000 + i)
        plan = plans[i]
        c, p = phone(i)
        # Officials and the facilitator respond to the drafters' threads, so
        # they wait until they have all of them.
        ts = eventually(
            f"{people[i]['name']} to receive the drafters' threads",
            lambda: (lambda t: t if len(t) >= drafter_threads else None)(p.threads(None)),
            timeout=120,
            interval=0.1,
        )
        tids = [t.id for t in ts]
        for _ in range(plan["comment"]):
            a, s, e = anchor(r)
            p.comment(a, s, e, r.choice(COMMENTS))
        for _ in range(plan["suggest"]):
            a, s, e, new = suggestion(r)
            p.suggest(a, s, e, new, "Ambtelijk voorstel: " + new + ".")
        statuses = [
            klad_ffi.AnswerStatus.ADOPTED,
            klad_ffi.AnswerStatus.PARTLY_ADOPTED,
            klad_ffi.AnswerStatus.NOT_ADOPTED,
            klad_ffi.AnswerStatus.NOTED,
        ]
        for _ in range(plan["answer"]):
            k = r.randrange(len(statuses))
            p.answer(r.choice(tids), statuses[k], ANSWER_REASONS[k])
        for _ in range(plan["reply"]):
            p.reply(r.choice(tids), r.choice(REPLIES))
        count(sum(plan.values()))
        done(c, p, f"{people[i]['name']}'s contributions")

    responder_ids = [i for i, x in enumerate(people) if x["role"] != "drafter"]
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(responder, responder_ids))
    finished = time.perf_counter()

    # The baseline process: one member, the same articles, nothing else.
    empty = server.create_process("Leeg proces (basislijn)")
    einv = server.invite(empty, "Anna de Vries", "drafter")
    c = klad_ffi.KladClient.open(str(workdir / "seed-empty"))
    p = c.join(server.url, einv["token"], 60_000)
    after = None
    eids = []
    for heading, body in ARTICLES:
        after = p.create_article(after, heading, body)
        eids.append(after)
    done(c, p, "the baseline process's articles")
    for d in workdir.glob("seed-*"):
        shutil.rmtree(d, ignore_errors=True)

    totals = {k: sum(pl[k] for pl in plans) for k in ("comment", "suggest", "reply", "answer")}
    log(
        f"seeded {counter['n']} contributions by {members} members in {finished - t0:.1f} s "
        f"(drafters {drafters_done - invited:.1f} s, responders {finished - drafters_done:.1f} s)"
    )
    return {
        "full": {
            "process": pid,
            # The measured phone is a new phone of the first drafter.
            "token": people[0]["token"],
            "name": people[0]["name"],
            "target": ids[TARGET_ARTICLE],
            "expect": {
                "members": members,
                "articles": len(ARTICLES),
                "threads": totals["comment"] + totals["suggest"],
                "replies": totals["reply"],
                "answers": totals["answer"],
            },
        },
        "empty": {
            "process": empty,
            "token": einv["token"],
            "name": "Anna de Vries",
            "target": eids[TARGET_ARTICLE],
            "expect": {"members": 1, "articles": len(ARTICLES), "threads": 0, "replies": 0, "answers": 0},
        },
        "roles": {r: roles.count(r) for r in ("drafter", "official", "facilitator")},
        "totals": totals,
        "contributions": counter["n"],
        "seconds": finished - t0,
        "seconds_with_baseline": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------- one measured phone (child process)


def measure(cfg):
    """Runs in a fresh Python process, so that its RSS is this phone's alone."""
    sys.path.insert(0, cfg["bindings"])
    import klad_ffi

    out = {"label": cfg["label"]}
    data = Path(cfg["data_dir"])
    gc.collect()
    time.sleep(0.2)
    out["rss_before_kib"] = proc_status()

    t = time.perf_counter()
    client = klad_ffi.KladClient.open(str(data))
    out["rss_opened_kib"] = proc_status()
    p = client.join(cfg["url"], cfg["token"], 60_000)
    out["join_s"] = time.perf_counter() - t
    exp = cfg["expect"]

    seen = {}

    def complete():
        ts = p.threads(None)
        seen.update(
            articles=len(p.articles()),
            members=len(p.members()),
            threads=len(ts),
            replies=sum(len(x.replies) for x in ts),
            answers=sum(len(x.answers) for x in ts),
        )
        return seen == exp

    try:
        eventually("the phone to receive the whole process", complete, timeout=120, interval=0.1)
    except RuntimeError as e:
        raise RuntimeError(f"{e}: expected {exp}, has {seen}") from None
    out["synced_s"] = time.perf_counter() - t
    gc.collect()
    time.sleep(0.5)  # let sync traffic settle
    out["rss_synced_kib"] = proc_status()
    out["disk_synced"] = dir_size(data)
    # The same after handing malloc's free pages back: less allocator noise.
    out["rss_synced_trimmed_kib"] = malloc_trim() or out["rss_synced_kib"]

    art = cfg["target"]
    body = next(a.body for a in p.articles() if a.id == art)
    n = cfg["edits"]

    if cfg.get("profile"):
        out.update(profile_edits(client, p, art, body, n, cfg))
        client.shutdown()
        return out

    base = DurableAppends(data.parent)

    # Typing: keystroke by keystroke, after the first sentence of the body;
    # about one keystroke in twenty is a backspace. In blocks of 100, each
    # after a block of 100 fsync'd appends.
    pos = body.index(". ") + 2
    times = []
    r = random.Random(7)
    k = 0
    for i in range(n):
        if i % 100 == 0:
            base.block(min(100, n - i))
        if i % 20 == 19 and k > 0:
            t = time.perf_counter()
            p.edit_body(art, pos - 1, 1, "")
            times.append(time.perf_counter() - t)
            pos -= 1
            k -= 1
            continue
        ch = TYPED[k % len(TYPED)]
        t = time.perf_counter()
        p.edit_body(art, pos, 0, ch)
        times.append(time.perf_counter() - t)
        pos += 1
        k += 1
    base.close()
    out["rss_after_edits_kib"] = proc_status()
    out["fsync"] = summary(base.fsync_times)
    out["sync_file_range"] = summary(base.sfr_times)
    out["edit"] = summary(times)
    t = time.perf_counter()
    p.commit()
    out["commit_s"] = time.perf_counter() - t
    t = time.perf_counter()
    eventually("the typing to be on the server", lambda: p.sync_status().all_on_server, interval=0.005)
    out["typing_acked_s"] = time.perf_counter() - t

    body = next(a.body for a in p.articles() if a.id == art)
    ranges = word_ranges(body)
    times = []
    for i in range(cfg["comments"]):
        s, e = r.choice(ranges)
        text = COMMENTS[i % len(COMMENTS)]
        t = time.perf_counter()
        p.comment(art, s, e, text)
        times.append(time.perf_counter() - t)
    out["comment"] = summary(times)
    t = time.perf_counter()
    eventually("the comments to be on the server", lambda: p.sync_status().all_on_server, interval=0.005)
    out["comments_acked_s"] = time.perf_counter() - t
    out["rss_after_comments_kib"] = proc_status()

    # Views, on a quiet phone: `all_on_server` turns true while the client is
    # still merging the server's acknowledgements, under the process lock
    # that views take too. Each loop starts after a full garbage collection,
    # so that Python's collector charges no pass for earlier lists to them.
    time.sleep(1.0)
    gc.collect()
    times = []
    for _ in range(cfg["view_calls"]):
        t = time.perf_counter()
        p.articles()
        times.append(time.perf_counter() - t)
    out["articles"] = summary(times)
    gc.collect()
    times = []
    for _ in range(cfg["view_calls"]):
        t = time.perf_counter()
        ts = p.threads(None)
        times.append(time.perf_counter() - t)
        del ts
    out["threads"] = summary(times)
    out["threads_count"] = len(p.threads(None))
    t = time.perf_counter()
    p.sync_status()
    out["sync_status_s"] = time.perf_counter() - t
    gc.collect()
    out["rss_end_kib"] = proc_status()
    # How much of that is free heap that malloc keeps (not live data).
    trimmed = malloc_trim()
    if trimmed:
        out["rss_trimmed_kib"] = trimmed
    client.shutdown()
    return out


def profile_edits(client, p, art, body, n, cfg):
    """The same typing under perf (on-CPU samples of every thread, with DWARF
    call stacks, so inclusive time per Rust function is right), then a
    shorter run under strace (syscalls per keystroke); and the threads view
    under perf."""
    out = {}
    pos = body.index(". ") + 2
    workdir = Path(cfg["data_dir"]).parent

    def typing(count):
        nonlocal pos
        for i in range(count):
            p.edit_body(art, pos, 0, TYPED[i % len(TYPED)])
            pos += 1
        p.commit()

    def recorded(name, f):
        perf_data = workdir / f"perf-{name}.data"
        rec = subprocess.Popen(
            ["perf", "record", "-F", "499", "--call-graph", "dwarf,32768", "-o", str(perf_data),
             "-p", str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # perf attaches
        t = time.perf_counter()
        f()
        took = time.perf_counter() - t
        rec.send_signal(signal.SIGINT)
        rec.wait(timeout=60)
        return took, perf_data

    if cfg.get("perf"):
        took, data = recorded("edits", lambda: typing(n))
        out["perf_loop_s"] = took
        out["perf"] = perf_tables(data)
        calls = max(5, cfg["view_calls"] // 2)
        took, data = recorded("threads", lambda: [p.threads(None) for _ in range(calls)])
        out["perf_threads"] = {"calls": calls, "s": took, "inclusive": perf_tables(data, self_too=False)["inclusive"]}

    if shutil.which("strace"):
        m = max(50, n // 10)
        log = workdir / "strace.txt"
        tr = subprocess.Popen(
            ["strace", "-f", "-c", "-o", str(log), "-p", str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.7)  # strace attaches to every thread
        typing(m)
        time.sleep(0.2)
        tr.send_signal(signal.SIGINT)
        tr.wait(timeout=60)
        out["strace"] = {"keystrokes": m, "calls": strace_counts(log)}

    # Typing offline, the phone's normal case: blocks of keystrokes while the
    # changes pile up unsynced, then back online.
    blocks = cfg.get("offline_blocks", 0)
    if blocks:
        client.set_online(False)
        eventually("the phone to go offline", lambda: not p.sync_status().online)
        per = max(100, n // 2)
        res = []
        done = 0
        for _ in range(blocks):
            times = []
            for i in range(per):
                t = time.perf_counter()
                p.edit_body(art, pos, 0, TYPED[i % len(TYPED)])
                times.append(time.perf_counter() - t)
                pos += 1
            p.commit()
            done += per
            st = p.sync_status()
            res.append({"after": done, "unsynced": st.unsynced_changes, **summary(times)})
        t = time.perf_counter()
        client.set_online(True)
        eventually("the offline typing to be on the server", lambda: p.sync_status().all_on_server,
                   timeout=120, interval=0.01)
        out["offline"] = {"blocks": res, "back_online_s": time.perf_counter() - t}
    return out


def perf_tables(perf_data: Path, self_too=True):
    """Shares of on-CPU samples by library and the top symbols by self time;
    and inclusive time ("children": the function and what it calls) per symbol."""
    res = {}
    base = ["perf", "report", "-i", str(perf_data), "--stdio", "--no-demangle", "-g", "none"]

    def rows(args, fields):
        r = subprocess.run(base + args, capture_output=True, text=True, timeout=180)
        out = []
        for l in r.stdout.splitlines():
            if not l.strip() or l.startswith("#"):
                continue
            parts = l.split(None, fields)
            if len(parts) < fields + 1 or not parts[0].endswith("%"):
                continue
            try:
                out.append([float(parts[0].rstrip("%"))] + parts[1:])
            except ValueError:
                continue
        return out

    if self_too:
        # percent, dso, [.], symbol
        self_rows = rows(["--no-children", "--sort", "dso,sym", "--percent-limit", "0"], 3)
        by_dso = {}
        for pct, dso, _, _ in self_rows:
            by_dso[dso] = by_dso.get(dso, 0.0) + pct
        res["by_dso"] = sorted(((v, k) for k, v in by_dso.items()), reverse=True)[:8]
        top = self_rows[:15]
        res["self"] = [(r[0], r[1], d) for r, d in zip(top, demangle_all([r[3] for r in top]))]
    # children%, self%, [.], symbol
    incl = []
    for r in rows(["--children", "--sort", "sym", "--percent-limit", "0.5"], 3):
        try:
            incl.append((r[0], float(r[1].rstrip("%")), r[3]))
        except ValueError:
            continue
    names = demangle_all([x[2] for x in incl])
    res["inclusive"] = [(a, b, n) for (a, b, _), n in zip(incl, names)]
    return res


def demangle_all(syms):
    """Demangled names without Rust's hash suffix, with one c++filt call."""
    syms = [x.strip() for x in syms]
    out = syms
    if shutil.which("c++filt") and syms:
        try:
            r = subprocess.run(["c++filt"], input="\n".join(syms) + "\n", capture_output=True, text=True, timeout=30)
            d = r.stdout.splitlines()
            if len(d) == len(syms):
                out = d
        except (OSError, subprocess.TimeoutExpired):
            pass
    res = []
    for x in out:
        x = x.strip()
        if "::h" in x and len(x.rsplit("::h", 1)[1]) == 16:
            x = x.rsplit("::h", 1)[0]
        res.append(x)
    return res


def strace_counts(log: Path):
    calls = {}
    try:
        text = log.read_text()
    except OSError:
        return calls
    for line in text.splitlines():
        parts = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(parts) >= 5 and parts[0].replace(".", "").isdigit():
            name = parts[-1]
            try:
                calls[name] = {"calls": int(parts[3]), "seconds": float(parts[1])}
            except ValueError:
                continue
    return calls


def child_main(cfg_json: str):
    cfg = json.loads(cfg_json)
    out = measure(cfg)
    print("RESULT " + json.dumps(out), flush=True)


def run_child(cfg, log):
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--_measure", json.dumps(cfg)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        sys.stderr.write(r.stderr)
        raise RuntimeError(f"the {cfg['label']} run failed (exit {r.returncode})")
    out = json.loads(line[len("RESULT "):])
    out["wall_s"] = time.perf_counter() - t
    log(f"{cfg['label']}: done in {out['wall_s']:.1f} s")
    return out


# ---------------------------------------------------------------- the report


def machine():
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "mem": mem, "kernel": platform.release(), "cpu": cpu}


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def us(x):
    if x >= 10_000:
        return f"{x / 1000:,.1f} ms"
    if x >= 1000:
        return f"{x / 1000:,.2f} ms"
    if x >= 10:
        return f"{x:,.0f} µs"
    return f"{x:,.1f} µs"


def mib(kib):
    return f"{kib / 1024:,.1f} MiB"


def ratio(a, b):
    if not b:
        return "–"
    r = a / b
    return f"{r:,.0f}×" if r >= 100 else f"{r:,.1f}×" if r >= 0.1 else f"{r:,.2f}×"


# Where a keystroke's time goes: the functions shown from the profile, in the
# order of the call path (caller first).
KEY_FUNCTIONS = [
    ("klad_ffi::process::ProcessInner::type_keystroke", "`edit_body` → `type_keystroke`: the replica's keystroke, stored, effects applied"),
    ("klad_client::replica::Replica::keystroke", "› `Replica::keystroke`: checks and the write-ahead record"),
    ("klad_client::typing::Typing::prepare", "› › `Typing::prepare`: article, version and range checks"),
    ("klad_core::text::TextDoc::check_live_article", "› › › `TextDoc::check_live_article` (does the article exist)"),
    ("klad_core::store::doc::DocStore<S>::write_batch", "› `DocStore::write_batch`: the write-ahead record (insert, flush, fdatasync)"),
    ("klad_client::replica::Replica::written", "› `Replica::written`: the keystroke accepted (the field's typed text)"),
    ("klad_ffi::process::ProcessInner::apply", "› `apply` (listener + `notify_status`)"),
    ("klad_ffi::process::ProcessInner::status", "› › `notify_status` → `status()`: the sync status"),
    ("klad_client::replica::Replica::unsynced", "› › › `Replica::unsynced`: recounted only when something moved"),
    ("automerge::automerge::Automerge::get_changes", "› › › › `Automerge::get_changes`: this device's unacknowledged changes, per document"),
    ("klad_ffi::process::ProcessInner::flush_pending", "background: `flush_pending`, each typing window → one Automerge change"),
    ("klad_ffi::process::ProcessInner::on_doc_event", "background: `on_doc_event`, sync traffic (acknowledgements) merged back"),
    ("sled::threadpool::perform_work", "background: sled's own threads (log writes, flusher)"),
    ("sync_file_range", "`sync_file_range` (sled's flush on Linux), from any thread"),
    ("fdatasync", "`fdatasync` (klad-core's SledStore after sled's flush), from any thread"),
]


def incl_of(rows, name):
    for pct, _, sym in rows:
        if sym == name:
            return pct
    return None


def paragraph(args, seeded, full, full_shm, empty, prof):
    """What dominates the per-edit time, from this run's numbers."""
    e = seeded["full"]["expect"]
    fe, ee = full["edit"]["mean_us"], empty["edit"]["mean_us"]
    parts = []
    if full_shm:
        se = full_shm["edit"]["mean_us"]
        disk = 1 - se / fe
        if disk >= 0.5:
            parts.append(
                f"The disk dominates a keystroke: with the data directory on tmpfs it costs {us(se)} instead of "
                f"{us(fe)} ({disk * 100:.0f}% less).")
        else:
            faster = f"only {disk * 100:.0f}% less" if disk > 0.005 else "no less"
            parts.append(
                f"CPU work, not the disk, dominates a keystroke: with the data directory on tmpfs, where syncing to "
                f"disk costs nothing, `edit_body` takes {us(se)} against {us(fe)} on disk ({faster}), while the "
                f"same keystroke on disk costs {ratio(fe, ee)} as much with {e['members']} members and "
                f"{seeded['contributions']:,} contributions as with 1 member and none ({us(fe)} vs {us(ee)}).")
    else:
        parts.append(f"A keystroke costs {ratio(fe, ee)} as much in the full process as in the empty one.")
    pr = (prof or {}).get("perf")
    if pr:
        rows = pr["inclusive"]
        k = incl_of(rows, "klad_ffi::process::ProcessInner::type_keystroke")
        st = incl_of(rows, "klad_ffi::process::ProcessInner::notify_status")
        info = incl_of(rows, "klad_core::process::ProcessDoc::info")
        wp = incl_of(rows, "klad_ffi::process::ProcessInner::with_pending")
        put = incl_of(rows, "<klad_core::store::sled::SledStore as klad_core::store::kv::KvStore>::put")
        fl = incl_of(rows, "klad_ffi::process::ProcessInner::flush_pending")
        sled_bg = incl_of(rows, "sled::threadpool::perform_work")
        if k:
            f = lambda x: f"{(x or 0) / k * 100:.0f}%"  # noqa: E731
            gc_ = incl_of(rows, "automerge::automerge::Automerge::get_changes")
            pieces = sorted(
                [((put or 0), "storing the write-ahead record (`SledStore::put`: sled's insert and flush, then "
                              "the `fdatasync` klad-core adds)"),
                 ((st or 0), "the sync status after the keystroke (`notify_status` → `status()`, which recounts "
                             "this device's unacknowledged changes only when a document or an acknowledgement "
                             "has moved)"),
                 ((wp or 0), "`with_pending` (the field's text with the window's typing applied, built on the "
                             "first keystroke of a window and then kept up to date)"),
                 ((info or 0), "`ProcessDoc::info()` (every member read from the process document)"),
                 ((gc_ or 0), "`Automerge::get_changes` (this device's unacknowledged changes)")],
                reverse=True,
            )
            shown = "; ".join(f"{name} {f(x)}" for x, name in pieces if x)
            parts.append(
                f"In the profile (perf with DWARF stacks, all threads) the keystroke call (`type_keystroke`) is "
                f"{k:.0f}% of all on-CPU samples. Of the keystroke: {shown}.")
            extra = []
            if fl is not None:
                extra.append(f"turning each 75 ms typing window into one Automerge change (`flush_pending`) {fl:.0f}%")
            if sled_bg is not None:
                extra.append(f"sled's own background threads {sled_bg:.0f}%")
            if extra:
                parts.append("Outside the call: " + ", ".join(extra) + " of the samples.")
    off = (prof or {}).get("offline")
    if off and len(off["blocks"]) > 1:
        a, z = off["blocks"][0], off["blocks"][-1]
        parts.append(
            f"Typing offline, a keystroke went from {us(a['mean_us'])} to {us(z['mean_us'])} "
            f"({ratio(z['mean_us'], a['mean_us'])}) while {z['after']:,} keystrokes piled up as "
            f"{z['unsynced']:,} unsynced changes.")
    st = (prof or {}).get("strace")
    if st and st["calls"]:
        m = st["keystrokes"]
        c = st["calls"]
        sfr = c.get("sync_file_range", {}).get("calls", 0) / m
        fs = (c.get("fsync", {}).get("calls", 0) + c.get("fdatasync", {}).get("calls", 0)) / m
        parts.append(
            f"Each keystroke makes {sfr:.1f} `sync_file_range` and {fs:.2f} `fsync`/`fdatasync` calls (strace): "
            f"sled 0.34 writes with `sync_file_range`, which flushes neither the drive's cache nor the file's size, "
            f"and klad-core's `SledStore` adds an `fdatasync` so that a returned call survives a power cut too; so "
            f"the disk floor of a keystroke is an fsync'd append ({us(full['fsync']['mean_us'])}), and a keystroke "
            f"costs {ratio(fe, full['fsync']['mean_us'])} that.")
    return " ".join(parts)


def report(args, seeded, runs, started, mach, tmp_fs, shm_fs, load_start):
    full, full_shm, empty, empty_shm, prof = (
        runs["full"], runs.get("full_shm"), runs["empty"], runs.get("empty_shm"), runs.get("profile"),
    )
    fs_unit = full["fsync"]["mean_us"]
    lines = []
    w = lines.append
    w("## Phone: time per local edit and memory (klad-ffi from Python)")
    w("")
    w(f"- Command: `{args.command}`")
    w(f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    w(f"- Machine: `nproc` {mach['nproc']} ({mach['cpu']}), {mach['mem']} memory, `uname -r` {mach['kernel']}, "
      f"Python {platform.python_version()}; load average {load_start} at the start, {loadavg()} at the end "
      f"(other work on the machine shows up as noise)")
    w(f"- Data directories on `{tmp_fs}`{f' and, for the tmpfs runs, `{shm_fs}` (/dev/shm)' if full_shm else ''}; "
      f"klad-ffi, its Python bindings and klad-server built with `cargo build --release`.")
    w("")
    e = seeded["full"]["expect"]
    t = seeded["totals"]
    w(f"**Setup.** A real klad-server on 127.0.0.1 with a fresh data directory. One process with "
      f"{e['members']} members ({seeded['roles']['drafter']} drafters, {seeded['roles']['official']} officials, "
      f"{seeded['roles']['facilitator']} facilitator), {len(ARTICLES)} articles of ordinance text "
      f"({sum(len(b) for _, b in ARTICLES):,} characters) and {seeded['contributions']:,} contributions, each "
      f"written through its author's own phone client: {t['comment']} comments, {t['suggest']} suggestions, "
      f"{t['reply']:,} replies, {t['answer']} formal answers ({t['comment'] + t['suggest']} threads); seeding took "
      f"{seeded['seconds']:.1f} s. The measured phone is a new phone (a fresh `KladClient` on a fresh data "
      f"directory, in a fresh Python process) of the first drafter: it joins, waits until every thread, reply and "
      f"answer is there, and then works. **Baselines, same run:** for memory, the same kind of phone holding a "
      f"second process with 1 member, the same {len(ARTICLES)} articles and no contributions (\"empty\"); for "
      f"time, appending a {len(baseline_record(1))}-byte "
      f"record to a file and `fsync`-ing it, in the phone's own process on the same filesystem, in blocks of 100 "
      f"between the blocks of 100 keystrokes.")
    w("")
    w("### Memory and disk")
    w("")
    w("| phone holding | RSS before `open` | after `open` | after join + sync | **client's RSS** (synced − before) | same after `malloc_trim(0)` | peak (VmHWM) − before | data directory on disk | join + sync everything |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")

    def mem_row(name, r):
        b = r["rss_before_kib"]["VmRSS"]
        o = r["rss_opened_kib"]["VmRSS"]
        a = r["rss_synced_kib"]["VmRSS"]
        tr = r["rss_synced_trimmed_kib"]["VmRSS"]
        h = r["rss_synced_kib"]["VmHWM"]
        d = r["disk_synced"][0]
        w(f"| {name} | {mib(b)} | {mib(o)} | {mib(a)} | **{mib(a - b)}** | {mib(tr - b)} | {mib(h - b)} | "
          f"{d / 1048576:,.2f} MiB | {r['synced_s']:.2f} s |")
        return a - b, tr - b, h - b, d, r["synced_s"]

    fm, ft, fh, fd, fsn = mem_row(f"full process ({e['members']} members, {seeded['contributions']:,} contributions)", full)
    em, et, eh, ed, esn = mem_row("empty process (baseline)", empty)
    w(f"| **full / empty** | | | | **{ratio(fm, em)}** | {ratio(ft, et)} | {ratio(fh, eh)} | {ratio(fd, ed)} | {ratio(fsn, esn)} |")
    w("")
    w("\"Before `open`\" is the Python interpreter with the bindings loaded; \"after `open`\" adds the client "
      "with no process loaded (sled, the sync runtime). `malloc_trim(0)` hands glibc's free pages back, so that "
      "column is closer to live data and varies less between runs. \"Join + sync everything\" is polled every "
      "0.1 s. Data directory sizes are allocated blocks (`du`) right after sync. While the phone works, its RSS "
      "grows (after the synced reading, the trim):")
    w("")
    w("| RSS (client's: minus before `open`) | synced, trimmed | after the keystrokes | after the comments | after the views | after `malloc_trim(0)` again |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, r in (("full", full), ("empty", empty)):
        b = r["rss_before_kib"]["VmRSS"]
        cells = [mib(r[k]["VmRSS"] - b) if k in r else "–" for k in
                 ("rss_synced_trimmed_kib", "rss_after_edits_kib", "rss_after_comments_kib", "rss_end_kib", "rss_trimmed_kib")]
        w(f"| {name} | " + " | ".join(cells) + " |")
    w("")
    w(f"### Time per call (data directory on `{tmp_fs}`)")
    w("")
    w(f"The unit is one fsync'd append on this filesystem: **{us(fs_unit)}** mean, {us(full['fsync']['p99_us'])} "
      f"p99, measured in the full phone's process interleaved with its keystrokes.")
    w("")
    w("| call | n | full: mean | full: p99 | **full mean / fsync'd append** | empty: mean | empty: p99 | full / empty (mean) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")

    def trow(name, key):
        a, b = full[key], empty[key]
        w(f"| {name} | {a['n']:,} | {us(a['mean_us'])} | {us(a['p99_us'])} | **{ratio(a['mean_us'], fs_unit)}** | "
          f"{us(b['mean_us'])} | {us(b['p99_us'])} | {ratio(a['mean_us'], b['mean_us'])} |")

    trow("baseline: append + `fsync`", "fsync")
    trow("append + `sync_file_range` (what sled does)", "sync_file_range")
    trow("`edit_body`, one keystroke", "edit")
    w(f"| `commit()` after the keystrokes | 1 | {us(full['commit_s'] * 1e6)} | | {ratio(full['commit_s'] * 1e6, fs_unit)} | "
      f"{us(empty['commit_s'] * 1e6)} | | {ratio(full['commit_s'], empty['commit_s'])} |")
    trow("`comment`", "comment")
    trow(f"`threads(None)`: {full['threads_count']:,} vs {empty['threads_count']} threads", "threads")
    trow("`articles()`", "articles")
    w("")
    w(f"The keystrokes were typed as fast as Python calls `edit_body` (1 in 20 a backspace), with the default 75 ms "
      f"typing window, so the client committed and synced typing in the background during the loop. After the "
      f"final `commit()` the typing was on the server (`all_on_server`) {full['typing_acked_s'] * 1000:,.0f} ms "
      f"later (empty: {empty['typing_acked_s'] * 1000:,.0f} ms); the comments "
      f"{full['comments_acked_s'] * 1000:,.0f} ms after the last one (empty: {empty['comments_acked_s'] * 1000:,.0f} ms). "
      f"The views were timed 1 s later, on a quiet phone: right after a burst of writes a view also waits for the "
      f"client to finish merging the server's acknowledgements (under the same process lock).")
    w("")
    if full_shm and empty_shm:
        w("### The same with the data directory on tmpfs (/dev/shm: syncing to disk costs nothing)")
        w("")
        w("| call (mean) | full, disk | full, tmpfs | disk's part (1 − tmpfs / disk) | empty, disk | empty, tmpfs |")
        w("|---|---:|---:|---:|---:|---:|")
        for name, key in (("append + `fsync`", "fsync"), ("`edit_body`", "edit"), ("`comment`", "comment"),
                          ("`threads(None)`", "threads"), ("`articles()`", "articles")):
            a, b, c, d = full[key]["mean_us"], full_shm[key]["mean_us"], empty[key]["mean_us"], empty_shm[key]["mean_us"]
            w(f"| {name} | {us(a)} | {us(b)} | {max(0.0, 1 - b / a) * 100:.0f}% | {us(c)} | {us(d)} |")
        w("")
        w(f"The tmpfs phones ran after the disk phones, so their process also held the disk phone's typing and "
          f"{args.comments} comments ({full_shm['threads_count']:,} threads instead of {full['threads_count']:,}): "
          f"compare the views with care.")
        w("")
    off = (prof or {}).get("offline")
    if off:
        b0 = off["blocks"][0]["mean_us"]
        w("### Typing offline")
        w("")
        w(f"The last phone (full process, disk) went offline (`set_online(false)`) and typed on, in blocks of "
          f"{off['blocks'][0]['n']:,} keystrokes, each block ending with `commit()`; the baseline is its own "
          f"first block.")
        w("")
        w("| keystrokes typed offline | unsynced changes after | `edit_body` mean | p99 | mean / first block |")
        w("|---:|---:|---:|---:|---:|")
        for b in off["blocks"]:
            w(f"| {b['after']:,} | {b['unsynced']:,} | {us(b['mean_us'])} | {us(b['p99_us'])} | "
              f"{ratio(b['mean_us'], b0)} |")
        w("")
        w(f"Back online, everything was on the server {off['back_online_s']:.2f} s after `set_online(true)`.")
        w("")
    w("### What dominates the per-edit time")
    w("")
    w(paragraph(args, seeded, full, full_shm, empty, prof))
    w("")
    if prof and "perf" in prof:
        pr = prof["perf"]
        w("<details><summary>Profile of the keystroke loop (full process, disk)</summary>")
        w("")
        w(f"`perf record -F 499 --call-graph dwarf` on the phone's Python process (all threads) while it typed "
          f"{args.edits:,} keystrokes and committed ({prof['perf_loop_s']:.2f} s, "
          f"{prof['perf_loop_s'] / args.edits * 1e6:,.0f} µs per keystroke under perf). On-CPU samples only: "
          f"waiting for the disk does not show (the tmpfs runs show it).")
        w("")
        w("| share of samples | library |")
        w("|---:|---|")
        for pct, dso in pr["by_dso"]:
            w(f"| {pct:.1f}% | `{dso}` |")
        w("")
        w("| inclusive | self | function |")
        w("|---:|---:|---|")
        for sym, label in KEY_FUNCTIONS:
            for incl, self_pct, name in pr["inclusive"]:
                if name == sym:
                    w(f"| {incl:.1f}% | {self_pct:.1f}% | {label} |")
                    break
        w("")
        w("Top self time:")
        w("")
        w("| self | library | symbol |")
        w("|---:|---|---|")
        for pct, dso, sym in pr["self"][:12]:
            w(f"| {pct:.1f}% | `{dso}` | `{sym[:120]}` |")
        w("")
        if "strace" in prof:
            st = prof["strace"]
            m = st["keystrokes"]
            calls = st["calls"]
            keys = [k for k in ("fsync", "fdatasync", "sync_file_range", "pwrite64", "write", "futex", "sendto",
                                "recvfrom", "openat") if k in calls]
            w(f"Syscalls per keystroke (`strace -f -c`, all threads, {m} keystrokes and one `commit`): "
              + ", ".join(f"`{k}` {calls[k]['calls'] / m:.2f}" for k in keys) + ".")
            w("")
        pt = prof.get("perf_threads")
        if pt:
            w(f"`threads(None)` under perf ({pt['calls']} calls, {pt['s'] / pt['calls'] * 1000:,.0f} ms each), "
              f"inclusive, the heaviest klad and automerge functions:")
            w("")
            w("| inclusive | self | function |")
            w("|---:|---:|---|")
            shown = 0
            for incl, self_pct, name in pt["inclusive"]:
                if (name.startswith(("klad_core::", "klad_ffi::", "<klad_core", "automerge::automerge::"))
                        and "{closure" not in name and "(inlined)" not in name):
                    w(f"| {incl:.1f}% | {self_pct:.1f}% | `{name[:120]}` |")
                    shown += 1
                if shown >= 10:
                    break
            w("")
        w("</details>")
        w("")
    return lines


# ---------------------------------------------------------------- main


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--_measure":
        child_main(sys.argv[2])
        return

    target = default_target()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=None, help="where to write the Markdown (default target/bench/phone.md)")
    ap.add_argument("--out", dest="out_opt", default=None)
    ap.add_argument("--server-bin", default=os.environ.get("KLAD_SERVER_BIN", str(target / "release/klad-server")))
    ap.add_argument("--bindings", default=os.environ.get("KLAD_BINDINGS_PYTHON",
                                                         str(target / "klad-ffi-bindings-release/python")))
    ap.add_argument("--members", type=int, default=50)
    ap.add_argument("--contributions", type=int, default=2000)
    ap.add_argument("--edits", type=int, default=2000, help="keystrokes per run")
    ap.add_argument("--comments", type=int, default=200, help="comments per run")
    ap.add_argument("--view-calls", type=int, default=20, help="calls of each view per run")
    ap.add_argument("--offline-blocks", type=int, default=4,
                    help="blocks of edits/2 keystrokes typed offline in the last run (0: none)")
    ap.add_argument("--workers", type=int, default=3, help="seeding phones open at a time")
    ap.add_argument("--no-tmpfs", action="store_true", help="skip the runs on /dev/shm")
    ap.add_argument("--no-profile", action="store_true", help="skip the last run (perf, strace, offline typing)")
    ap.add_argument("--tmp", default=None, help="directory for the server's and phones' data (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--command", default=None, help="the command line to print in the report")
    args = ap.parse_args()
    out_path = Path(args.out_opt or args.out or (ROOT / "target/bench/phone.md"))
    if args.command is None:
        args.command = " ".join(["python3", "scripts/bench-phone.py"] + sys.argv[1:])

    started = time.perf_counter()
    load_start = loadavg()

    def log(msg):
        print(f"[{time.perf_counter() - started:6.1f} s] {msg}", file=sys.stderr, flush=True)

    server_bin = Path(args.server_bin)
    bindings = Path(args.bindings)
    for what, p in (("klad-server", server_bin), ("the Python bindings", bindings / "klad_ffi.py")):
        if not p.exists():
            sys.exit(f"error: {what} not found at {p}; run scripts/bench-phone.sh, which builds them")
    sys.path.insert(0, str(bindings))

    work = Path(tempfile.mkdtemp(prefix="klad-bench-phone-", dir=args.tmp))
    shm_base = Path("/dev/shm")
    shm = None
    if not args.no_tmpfs and shm_base.is_dir() and os.access(shm_base, os.W_OK):
        shm = Path(tempfile.mkdtemp(prefix="klad-bench-phone-", dir=shm_base))
    server = Server(server_bin, work / "server")
    runs = {}
    try:
        server.start()
        log(f"klad-server on {server.addr}, data in {work}")
        seeded = seed(server, args.members, args.contributions, work, args.workers, log)

        def cfg(label, which, base, **extra):
            d = base / label
            d.mkdir(parents=True, exist_ok=True)
            return dict(
                label=label,
                bindings=str(bindings),
                url=server.url,
                token=seeded[which]["token"],
                target=seeded[which]["target"],
                expect=seeded[which]["expect"],
                data_dir=str(d / "phone"),
                edits=args.edits,
                comments=args.comments,
                view_calls=args.view_calls,
                **extra,
            )

        def run(label, which, base, **extra):
            out = run_child(cfg(label, which, base, **extra), log)
            # Its comments are in the process now; the next phone receives them too.
            seeded[which]["expect"]["threads"] += out.get("comment", {}).get("n", 0)
            return out

        runs["full"] = run("full", "full", work)
        runs["empty"] = run("empty", "empty", work)
        if shm:
            runs["full_shm"] = run("full_shm", "full", shm)
            runs["empty_shm"] = run("empty_shm", "empty", shm)
        if not args.no_profile:
            runs["profile"] = run("profile", "full", work, profile=True, perf=perf_usable(),
                                  offline_blocks=args.offline_blocks)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            if shm:
                shutil.rmtree(shm, ignore_errors=True)

    lines = report(args, seeded, runs, started, machine(), fs_type(work.parent), fs_type(shm_base) if shm else "–",
                   load_start)
    total = time.perf_counter() - started
    lines.append(f"Wall time of the whole script (server, seeding, {len(runs)} measured phones"
                 f"{', profile' if 'profile' in runs else ''}): **{total:.0f} s**.")
    lines.append("")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text("\n".join(lines))
    print("\n".join(lines))
    log(f"report written to {out_path}")


if __name__ == "__main__":
    main()
