"""The docs run as written: docs/tutorial.md command by command, then docs/analysis.md, in one fresh folder.

Each page's fenced blocks are taken in order: a ```yaml block after a ``<!-- file: NAME -->`` line is
written to NAME (on a tiny budget: the replacements in BUDGET, each of which must match the page exactly
once); each line of a ```bash block runs as a user would type it (``runner X`` and ``.venv/bin/runner X``
as ``python -m runner X``, anything else through the shell) and must exit 0, or N where the line says
``# exits N``; every ```python block runs in one namespace per page, in the folder. ```text blocks are
outputs, not run.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli

DOCS = ROOT / "docs"
FENCE = re.compile(r"(?:^<!-- file: (?P<file>[\w.-]+) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)

# The install lines: this test runs in the checkout's own environment (sys.executable), nothing to install.
INSTALL = re.compile(r"^(python3 -m venv |source \.venv/bin/activate|\.venv/bin/pip )")
# A line the reader interrupts by hand (Ctrl-C): not run here; the rerun after it is.
INTERRUPTED = "# (press Ctrl-C"
EXITS = re.compile(r"# exits (\d+)")

# The same commands on a tiny budget (about a minute instead of several): old -> new in each embedded spec.
BUDGET = {
    "tutorial_train.yaml": [
        ("episodes: 1000, seed: 0", "episodes: 100, seed: 0"),
        ("steps: 600", "steps: 30"),
        ("warmup: 50", "warmup: 5"),
        ("log_every: 20", "log_every: 10"),
        ("eval: {episodes: 100}", "eval: {episodes: 10}"),
    ],
    "tutorial_steer.yaml": [
        ("episodes: 20, seed: 500000", "episodes: 4, seed: 500000"),
        ("{rollout: {episodes: 50, reduce: mean}}", "{rollout: {episodes: 8, reduce: mean}}"),
    ],
    "analysis_positions.yaml": [
        ("episodes: 10, seed: 600000", "episodes: 4, seed: 600000"),
        ("{rollout: {episodes: 20}}", "{rollout: {episodes: 8}}"),
    ],
}


@dataclass
class Block:
    doc: str
    line: int  # of the block's first body line in the page
    lang: str
    body: str
    file: str | None


def blocks(name: str) -> list[Block]:
    """The fenced blocks of docs/NAME, in order."""
    text = (DOCS / name).read_text()
    found = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        found.append(Block(f"docs/{name}", line, m["lang"], m["body"], m["file"]))
    return found


def on_budget(name: str, text: str) -> str:
    for old, new in BUDGET.get(name, []):
        assert text.count(old) == 1, f"{name}: budget replacement {old!r} matches {text.count(old)} times, not once"
        text = text.replace(old, new)
    return text


def shell_line(line: str, folder: Path, where: str) -> subprocess.CompletedProcess | None:
    """Run one line of a bash block as a user would; None for lines a user runs but this test does not."""
    if INSTALL.match(line) or INTERRUPTED in line:
        return None
    expected = int(m[1]) if (m := EXITS.search(line)) else 0
    words = shlex.split(line, comments=True)
    if words[0] in ("runner", ".venv/bin/runner"):
        done = cli(*words[1:], cwd=folder)
    else:
        done = subprocess.run(line, shell=True, cwd=folder, capture_output=True, text=True, timeout=60)
    assert done.returncode == expected, (f"{where}: `{line}` exited {done.returncode}, expected {expected}\n"
                                         f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    return done


@dataclass
class Page:
    """What running a page left: each shell line with what it printed (None: not run), the Python namespace,
    the spec files written."""
    ran: list[tuple[str, subprocess.CompletedProcess | None]]
    namespace: dict
    written: set[str]

    def printed(self, line: str) -> list[str]:
        """What each run of ``line`` printed (stdout and stderr)."""
        outs = [done.stdout + done.stderr for cmd, done in self.ran if cmd.split("#")[0].strip() == line and done]
        assert outs, f"the page has no command `{line}`"
        return outs


def run_page(name: str, folder: Path) -> Page:
    """Every block of a page in order, in ``folder`` (the working directory)."""
    page = Page([], {"__name__": "__docs__"}, set())
    for block in blocks(name):
        where = f"{block.doc}:{block.line} ({block.lang} block)"
        if block.file:
            (folder / block.file).write_text(on_budget(block.file, block.body))
            page.written.add(block.file)
        elif block.lang == "bash":
            for offset, line in enumerate(block.body.splitlines()):
                if line.strip() and not line.lstrip().startswith("#"):
                    page.ran.append((line, shell_line(line, folder, f"{block.doc}:{block.line + offset}")))
        elif block.lang == "python":
            # padded so that a traceback's line numbers are the page's
            code = compile("\n" * (block.line - 1) + block.body, block.doc, "exec")
            try:
                exec(code, page.namespace)
            except Exception:
                pytest.fail(f"{where} failed:\n{traceback.format_exc()}")
    return page


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory: pytest.TempPathFactory):
    """docs/tutorial.md run in a fresh project folder: (the folder, the Page)."""
    folder = tmp_path_factory.mktemp("project")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MPLBACKEND", "Agg")
        page = run_page("tutorial.md", folder)
    return folder, page


def test_tutorial_runs_as_written(tutorial):
    folder, page = tutorial
    assert {"tutorial_train.yaml", "tutorial_steer.yaml"} <= page.written  # so the budget applied
    skipped = [cmd for cmd, done in page.ran if done is None]
    assert any(INTERRUPTED in cmd for cmd in skipped) and any(INSTALL.match(cmd) for cmd in skipped)
    assert len(page.ran) - len(skipped) >= 15  # init, validate, plan x2, run x3, ls, show x3, plot, status x2, ls

    validated = page.printed("runner validate my_train.yaml tutorial_train.yaml tutorial_steer.yaml")[0]
    assert "tutorial_steer.yaml: ok (18 points)" in validated
    trained = page.printed("runner run tutorial_train.yaml")[0]
    assert re.search(r"tutorial-train: success \d+\.\d% over 10 unseen episodes \(random policy \d+\.\d%\)", trained)
    assert "model.safetensors" in page.printed("ls results/tutorial-train/models/model")[0]
    assert "success, mean over 10 episodes (%): " in page.printed("runner show tutorial-train --var success")[0]
    table = page.printed("runner show tutorial-steer")[0]
    assert "success, mean over 8 episodes (%) (rows coefficient, columns layer)" in table

    png = folder / "tutorial-steer.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).ndim == 3  # it decodes

    listing = page.printed("runner ls")[0]
    assert re.search(r"tutorial-steer .* 18/18 +complete", listing), listing
    assert re.search(r"tutorial-train .* 1/1 +complete", listing), listing
    assert all("finished 18" in out for out in page.printed("runner status tutorial-steer"))
    first, rerun = page.printed("runner run tutorial_steer.yaml")  # the scan, and the rerun after Ctrl-C
    assert "(18 of 18 points ok)" in first and "all 18 points already done" in rerun
    assert page.namespace["ds"].sizes["coefficient"] == 9 and page.namespace["steps"] > 0


def test_analysis_runs_as_written(tutorial, monkeypatch):
    """After the tutorial (two sections use its agent and scan), in the same folder."""
    folder, _ = tutorial
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    page = run_page("analysis.md", folder)
    assert {"analysis_contrast.yaml", "analysis_random.yaml", "analysis_positions.yaml"} <= page.written
    assert "2 of 12 points failed" in page.printed("runner run analysis_positions.yaml")[0]
    assert dict(page.namespace["both"].sizes) == {"vector": 2, "coefficient": 5, "layer": 4}
    for figure in ("contrast_vs_random.png", "positions.png", "kl.png", "success_by_position.png", "success_ci.png"):
        assert (folder / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
    assert (folder / "contrast_vs_random.csv").read_text().startswith("vector,coefficient,layer,logit_diff")
