"""docs/MOBILE.md's "Try it from Python" script, run as written: the block
marked ```python walkthrough is saved as try_klad.py and run with python3 in a
fresh directory, as the document says (KLAD_TOKEN a drafter's token,
PYTHONPATH the generated bindings), with KLAD_SERVER set to the test server's
address instead of the default http://127.0.0.1:7700. Then another member's
phone checks that what it wrote is on the server."""

import os
import subprocess
import sys

from conftest import BINDINGS, ROOT, eventually

MOBILE_MD = ROOT / "docs" / "MOBILE.md"


def walkthrough_script():
    """The code of the ```python walkthrough block of docs/MOBILE.md."""
    lines, inside, found = [], False, 0
    for line in MOBILE_MD.read_text().splitlines():
        if not inside:
            if line.rstrip() == "```python walkthrough":
                inside, found = True, found + 1
            continue
        if line.rstrip() == "```":
            inside = False
            continue
        lines.append(line)
    assert found == 1, f"docs/MOBILE.md has one ```python walkthrough block (found {found})"
    return "\n".join(lines) + "\n"


def run_script(tmp_path, env_extra):
    script = tmp_path / "try_klad.py"
    script.write_text(walkthrough_script())
    env = dict(os.environ, PYTHONPATH=str(BINDINGS), **env_extra)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_python_walkthrough_in_mobile_md_runs_as_written(server, phones, tmp_path):
    pid = server.create_process("Parkeerverordening")
    anna = server.invite(pid, "Anna de Vries", "drafter")

    out = run_script(tmp_path, {"KLAD_SERVER": server.url, "KLAD_TOKEN": anna["token"]})
    assert out.returncode == 0, out.stderr
    printed = out.stdout.splitlines()
    assert printed[0] == "joined: Parkeerverordening", out.stdout
    # The rule's reason code, and its sentence in Dutch (the library's default).
    assert printed[1].startswith("refused: role-may-not ") and "ambtenaren" in printed[1], out.stdout
    assert "Artikel 1: Bewoners parkeren in hun eigen straat." in printed, out.stdout
    assert "Anna de Vries: Geldt dit ook voor bezoekers?" in printed, out.stdout
    assert printed[-1] == "all on the server", out.stdout

    # What it wrote is on the server: another member's phone receives it.
    _, omar = phones.join("omar", server, server.invite(pid, "Omar Bakker", "official"))
    eventually("the article to reach Omar",
               lambda: [a.body for a in omar.articles()] == ["Bewoners parkeren in hun eigen straat."])
    eventually("the comment to reach Omar",
               lambda: [(t.author.name, t.text) for t in omar.threads(None)]
               == [("Anna de Vries", "Geldt dit ook voor bezoekers?")])


def test_the_python_walkthrough_says_what_is_missing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KLAD_TOKEN"}
    out = subprocess.run(
        [sys.executable, "-c", walkthrough_script()],
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(BINDINGS)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "Set KLAD_TOKEN" in out.stderr, out.stderr
    assert not (tmp_path / "klad-phone").exists(), "nothing was created"
