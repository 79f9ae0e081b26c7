"""The repository installs from a fresh clone: nothing the package needs is ignored or missing."""
from __future__ import annotations

import subprocess

import pytest

from tests.conftest import ROOT


def test_every_package_folder_is_a_regular_package():
    for folder in (ROOT / "runner").rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py")):
            assert (folder / "__init__.py").is_file(), f"{folder} lacks __init__.py (setuptools would skip it)"


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_source_file_is_git_ignored():
    sources = [str(p.relative_to(ROOT)) for p in (ROOT / "runner").rglob("*.py")]
    sources += [str(p.relative_to(ROOT)) for p in (ROOT / "specs").glob("*.yaml")]
    done = subprocess.run(["git", "check-ignore", *sources], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.strip() == "", f"ignored by .gitignore, so missing from every clone:\n{done.stdout}"


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    lines = (ROOT / "README.md").read_text().splitlines()
    block = lines[lines.index("```bash") + 1: lines.index("```bash") + 3]
    assert "runner run specs/quickstart_train.yaml" in block[0] and "runner run specs/quickstart.yaml" in block[0]
    assert "pytest" in block[1]
    assert block[1] in (ROOT / ".ci" / "run").read_text()


def test_every_example_spec_validates():
    from runner.cli import main

    specs = sorted(str(p) for p in (ROOT / "specs").glob("*.yaml"))
    assert len(specs) >= 10
    assert main(["validate", *specs]) == 0


def test_the_readme_layout_table_lists_every_module():
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in readme.splitlines() if line.startswith("| `runner/")}
    missing = []
    for path in (ROOT / "runner").rglob("*.py"):
        if path.stem == "__init__" and path.parent != ROOT / "runner":
            continue  # a package's own row describes it
        folder = path.parent.relative_to(ROOT).as_posix() + "/"
        if f"`{path.stem}`" not in rows.get(folder, ""):
            missing.append(path.relative_to(ROOT).as_posix())
    assert missing == []
