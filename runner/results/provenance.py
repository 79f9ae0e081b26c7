"""Provenance: what a result was computed from and by, as netCDF attrs (nested values as JSON text).

Two kinds of version are kept apart: the runner's own (its version and, when it
runs from a git checkout, that checkout's commit) and the experiment's (the git
state of the project folder the spec was run in, or "not a git repository").
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from runner.results.files import json_attr

PACKAGES = ("torch", "transformer_lens", "ray", "minigrid", "xarray", "numpy", "pydantic")
NOT_A_REPOSITORY = "not a git repository"


def _git(cwd: Path, *args: str) -> str | None:
    """A git command's output in ``cwd``; None outside a repository (or without git)."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(folder: Path) -> tuple[str, str]:
    """(commit, dirty) of the repository holding ``folder``: dirty as JSON true/false, or null outside one."""
    commit = _git(folder, "rev-parse", "HEAD")
    if commit is None:
        return NOT_A_REPOSITORY, json_attr(None)
    changes = _git(folder, "status", "--porcelain", "--untracked-files=no", "--", ".")
    return commit, json_attr(bool(changes))


@functools.lru_cache(maxsize=1)
def runner_stamp() -> dict[str, str]:
    """The runner that computes: its version and the commit of its own source (empty when installed from a wheel)."""
    source = Path(__file__).resolve().parents[1]
    commit, dirty = git_state(source) if (source.parent / ".git").exists() else ("", json_attr(None))
    return {"runner_version": version("runner"), "runner_commit": commit, "runner_dirty": dirty}


@functools.lru_cache(maxsize=None)
def version(package: str) -> str:
    """An installed package's version (read once per process: metadata lookups cost milliseconds)."""
    try:
        return metadata.version(package.replace("_", "-"))
    except metadata.PackageNotFoundError:
        return "unknown"


def spec_sha256(plan: Any) -> str:
    return hashlib.sha256(plan.loaded.text.encode()).hexdigest()


def shard_stamp(plan: Any) -> dict[str, str]:
    """What every shard carries: the run it belongs to and the runner that computed it."""
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {"run_id": plan.run_id, "spec_sha256": spec_sha256(plan), "created": created, **runner_stamp()}


def provenance(plan: Any, executor: str, device: str) -> dict[str, str]:
    """The attrs every result carries: spec, the files it read, versions, git state, time, executor, device."""
    commit, dirty = git_state(plan.base_dir)
    attrs = {
        "spec_yaml": plan.loaded.text,
        "spec_sha256": spec_sha256(plan),
        "run_id": plan.run_id,
        "name": plan.spec.name,
        "description": plan.spec.description,
        **runner_stamp(),
        "git_commit": commit,
        "git_dirty": dirty,
        "input_files": json_attr(plan.reads),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "executor": executor,
        "device": device,
        "torch_threads": plan.spec.execution.cpus_per_task,   # numerics differ across thread counts and machines
        "sweep_dims": json_attr(plan.dims),
    }
    for package in PACKAGES:
        attrs[f"{package}_version"] = version(package)
    return attrs
