"""The documented flows run as written: docs/scan.md's whole flow on the local Hub and docs/space.md's "Running it
locally", each bash block copied from its page and run by bash in an empty folder, so a page cannot drift from what
the commands do.

What differs from a reader's shell, each for the suite's sake and said here: the `tiny` zoo is the session's own build
of the same command (built once for every test), servers listen on a free port rather than the page's, and the
Space, which the page runs in the foreground, runs in the background while the test asks it for its experts.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow
#: A flow is minutes on a loaded 2-core machine; a hung server must still end the test.
FLOW_TIMEOUT_S = 1200


def shell_block(page: Path, heading: str) -> str:
    """The first ```bash block after the Markdown heading `heading` on `page`."""
    text = page.read_text(encoding="utf-8")
    at = text.index(f"\n{heading}\n")
    found = re.compile(r"```bash\n(.*?)```", re.S).search(text, at)
    assert found, f"no bash block under {heading!r} in {page.name}"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_flow(script: str, folder: Path) -> str:
    """Run `script` with bash in `folder`, stopping at the first failing command; its background jobs (a Hub) end with
    it. `hf-probex` is this environment's; the caches are the folder's own. Returns what it printed (stdout, stderr)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "HF_PROBEX_CACHE": str(folder / "cache"), "HF_HOME": str(folder / "hf-home")}
    wrapped = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    done = subprocess.run(["bash", "-c", wrapped], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=FLOW_TIMEOUT_S)
    printed = done.stdout + done.stderr
    assert done.returncode == 0, f"the flow stopped ({done.returncode}):\n{printed[-4000:]}"
    return printed


def test_the_whole_flow_on_the_local_hub_runs_as_written(tiny_zoo, tmp_path):
    script = shell_block(ROOT / "docs" / "scan.md", "### The whole flow on the local Hub (the tiny zoo, a few minutes on 2 cores)")
    build = "hf-probex zoo build --preset tiny --out zoo-tiny"
    assert build in script and "8765" in script
    shutil.copytree(tiny_zoo.root, tmp_path / "zoo-tiny")
    script = script.replace(build, "true").replace("8765", str(_free_port()))
    printed = run_flow(script, tmp_path)

    assert re.search(r"tree probex-zoo-sd/sd-root: 5 members \(5 by cards, 0 by weights.*published to alice/sd-tree-table",
                     printed)
    assert "4 documented members (3 train, 1 held out), 1 undocumented" in printed
    assert "saved to experts/sd" in printed and "cannot split" not in printed
    assert re.search(r"10 members \(5 by cards, 5 by weights, 0 unreadable\).*published to alice/sd-tree-table", printed)
    ranked = re.findall(r"^\s+\d\. [+-]\d\.\d+\s+(\S+)", printed, re.M)
    assert len(ranked) == 3 and ranked[0] == "probex-zoo-sd/sd-lora-0004"  # the page's query names this LoRA's concept
    assert "10 repos in" in printed and "10 skipped" in printed  # the bot's dry run read the table's ten members
    assert "hf_alice_secret" not in printed  # the token is never printed


def test_running_the_space_locally_runs_as_written(tiny_zoo, tmp_path):
    """docs/space.md's block: the zoo imported, two experts trained and registered, the Space served on the local Hub;
    the page answers and lists both experts (the block's server, sent to the background here, is stopped after)."""
    script = shell_block(ROOT / "docs" / "space.md", "## Running it locally")
    build, serve = "hf-probex zoo build --preset tiny --out zoo-tiny", "hf-probex space --hub-root hub"
    assert build in script and serve in script
    shutil.copytree(tiny_zoo.root, tmp_path / "zoo-tiny")
    port = _free_port()
    page = f"http://127.0.0.1:{port}"
    script = script.replace(build, "true").replace(serve, f"{serve} --port {port} &")
    script += (f"curl -s -o /dev/null --retry 60 --retry-connrefused --retry-delay 2 {page}/config\n"
               f"{sys.executable} -c \"from gradio_client import Client; "
               f"print(Client('{page}', verbose=False).predict(api_name='/list_experts')[0])\"\n")
    printed = run_flow(script, tmp_path)

    assert printed.count("saved to experts/") == 2 and printed.count("registered in") == 2
    assert "**2** experts for **2** trees (sd, vit)" in printed
