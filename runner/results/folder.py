"""The layout of ``results/``, in one place: run folders, their files, and the data cache.

::

    results/<name>/
      .runner              marker: runner made this folder (JSON: run id, runner version, created)
      .lock                held (flock) by the run writing here; it names the holder
      spec.yaml            the spec exactly as run
      shards/<task>.nc     one per finished task; a rerun skips the points they hold
      result.nc            the merged dataset
      run.log              what each `runner run` said here (appended; --fresh starts it over)
      models/<point>/      train specs: model.safetensors + config.json per grid point
      vectors/<id>.npy     steer specs: each distinct vector points added (coordinate vector_id names it)
    results/.cache/trajectories/<key>.npz   generated demonstrations

The driver is the only writer, one run per folder at a time (the lock). Every
file lands by rename from a temporary name, so a killed run leaves whole shards
or none, never half of one. runner writes only into folders it made (the marker)
or empty ones, and ``--fresh`` deletes only what it wrote.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from runner.errors import RunnerError
from runner.ids import content_id
from runner.results.files import temp_files, write_atomic
from runner.results.shards import ShardState, read_shards, write_shard
from runner.spec import parse_spec

RESULTS, MODELS, VECTORS = "results", "models", "vectors"
MARKER, LOCK, RUN_LOG = ".runner", ".lock", "run.log"


def results_root(base_dir: str | Path) -> Path:
    """Where run folders live: ``results/`` under the project root."""
    return Path(base_dir) / RESULTS


def trajectory_cache(base_dir: str | Path) -> Path:
    """Where generated demonstrations are cached: ``results/.cache/trajectories``."""
    return results_root(base_dir) / ".cache" / "trajectories"


def point_name(coords: dict[str, Any], default: str = "model") -> str:
    """A file name for a point's artifacts from its coordinates: ``n_layers=2,seed=0`` (``default`` without a sweep).

    Scalars are written as they are; lists and mappings (a swept vector source, say) by a short content id.
    """
    if not coords:
        return default

    def text(value: Any) -> str:
        plain = isinstance(value, (bool, int, float, str)) and len(str(value)) <= 40
        return str(value) if plain else content_id(value, 8)

    name = ",".join(f"{k}={text(v)}" for k, v in coords.items())
    return "".join(c if c.isalnum() or c in "=,.-_+" else "_" for c in name)


def model_file(coords: dict[str, Any], name: str) -> str:
    """A file of the model a train point made, relative to its run folder (what a task returns)."""
    return f"{MODELS}/{point_name(coords)}/{name}"


def vector_file(vector_id: str) -> str:
    """A steering vector, relative to its run folder, named by its content (one file per distinct vector)."""
    return f"{VECTORS}/{vector_id}.npy"


class RunFolder:
    """``results/<name>/`` of one run: the only place that knows its layout."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.spec_file = self.root / "spec.yaml"
        self.shard_dir = self.root / "shards"
        self.result_file = self.root / "result.nc"
        self.models_dir = self.root / MODELS
        self.vectors_dir = self.root / VECTORS
        self.marker = self.root / MARKER
        self.lock_file = self.root / LOCK
        self.log_file = self.root / RUN_LOG

    @classmethod
    def named(cls, name: str, base_dir: str | Path) -> RunFolder:
        """The folder of run ``name`` under the project's ``results/``."""
        return cls(results_root(base_dir) / name)

    def model_dir(self, coords: dict[str, Any]) -> Path:
        """Where the model a train point made lives."""
        return (self.root / model_file(coords, "x")).parent

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Everything runner writes here (what ``--fresh`` removes)."""
        return (self.spec_file, self.shard_dir, self.result_file, self.models_dir, self.vectors_dir, self.log_file,
                self.marker)

    # ---------------------------------------------------------------- ownership

    def check(self, run_id: str, fresh: bool = False, spec_text: str | None = None) -> None:
        """Refuse, before anything is written, a folder this run may not write into (RunnerError, exit 2)."""
        if self.root.exists() and not self.root.is_dir():
            raise RunnerError(f"the run folder {self.root} exists and is not a folder",
                              hint="Give --out a folder path (it is created if missing).")
        existing = next((p for p in (self.root, *self.root.parents) if p.exists()), Path("/"))
        try:  # a real write, not os.access: root passes os.access where the filesystem still refuses
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as exc:
            raise RunnerError(f"cannot write the run folder {self.root}: {existing} is not writable "
                              f"({exc.strerror or exc})", hint="Give --out a folder you can write to.") from None
        if not self.root.exists() or all(p.name in (LOCK, RUN_LOG) for p in self.root.iterdir()):
            return  # empty but for what a run left before its first file (a log of it, at most)
        if not self.marker.is_file() and not (self._legacy(run_id, spec_text) and not fresh):
            raise RunnerError(f"{self.root} holds files that runner did not write (it has no {MARKER} marker); "
                              f"runner writes only into folders it made or empty ones"
                              + (", and --fresh deletes only what runner wrote" if fresh else ""),
                              hint="Give --out a new or empty folder.")
        old = self._previous_run_id(run_id, spec_text)
        if not fresh and old not in (None, run_id):
            raise RunnerError(
                f"{self.root} already holds results of a different spec (run id {old}, this spec's is "
                f"{run_id}); mixing them would corrupt both.",
                hint="Rerun with --fresh to discard the old results, or --out DIR to write elsewhere.")

    def _legacy(self, run_id: str, spec_text: str | None) -> bool:
        """A folder an earlier runner made (before the marker): its spec and shards, the same run."""
        return self.shard_dir.is_dir() and self.spec_file.is_file() and self._previous_run_id(run_id, spec_text) == run_id

    def _previous_run_id(self, run_id: str | None = None, spec_text: str | None = None) -> str | None:
        """The run id of the spec this folder holds (the same text: the same run, without parsing it again)."""
        if not self.spec_file.is_file():
            return None
        try:
            text = self.spec_file.read_text()
            return run_id if text == spec_text else parse_spec(text, str(self.spec_file)).run_id
        except (RunnerError, OSError, UnicodeDecodeError):
            return "(unreadable spec.yaml)"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the folder's lock for a run; RunnerError (exit 2) naming the holder if another run has it.

        The lock is an flock, so the kernel frees it when its holder dies: a killed run
        leaves no stale lock behind. If the run stops before ``prepare`` (refused), the
        folders this call created are removed again: a refused run leaves nothing.
        """
        created = [p for p in (self.root, *self.root.parents) if not p.exists()]
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            if not _flock(fd, fcntl.LOCK_EX, tries=5):  # a few tries: `runner ls` looks at the lock for an instant
                holder = os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
                created = []  # the folder is the other run's
                raise RunnerError(f"{self.root} is busy: another run is writing it ({holder})",
                                  hint="Wait for it to finish, or give --out another folder.")
            since = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the flock
            if created and not self.marker.exists():
                self.lock_file.unlink(missing_ok=True)
                for folder in created:  # deepest first
                    with contextlib.suppress(OSError):
                        folder.rmdir()

    def holder(self) -> str | None:
        """Who holds the folder's lock ("pid 12 on host since ..."), or None when no run is writing here."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            if _flock(fd, fcntl.LOCK_SH):
                return None  # closing the file lets go again
            return os.pread(fd, 300, 0).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)

    def prepare(self, plan: Any, fresh: bool = False) -> list[Path]:
        """Make the folder ready for ``plan`` (call it holding the lock); returns leftover temp files removed."""
        self.check(plan.run_id, fresh, plan.loaded.text)  # again, now that no other run can change it
        if fresh:
            for path in self.outputs:
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        leftovers = temp_files(self.root)
        for path in leftovers:
            path.unlink(missing_ok=True)
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.spec_file, plan.loaded.text.encode())
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        marker = {"run_id": plan.run_id, "created": created, "name": plan.spec.name, "kind": plan.spec.kind,
                  "points": len(plan), "not_applicable": len(getattr(plan, "not_applicable", ()))}  # for `runner ls`
        write_atomic(self.marker, json.dumps(marker).encode())
        return leftovers

    # ---------------------------------------------------------------- contents

    def read_shards(self, repair: bool = False, each: Any = None) -> ShardState:
        """The folder's shards, checked (see ``runner.results.shards.read_shards``)."""
        return read_shards(self.shard_dir, repair, each)

    def write_files(self, files: dict[str, bytes]) -> None:
        """Write files a task returned (paths relative to the run folder), each atomically."""
        for relative, data in files.items():
            path = (self.root / relative).resolve()
            if self.root.resolve() not in path.parents:
                raise ValueError(f"a task returned a file outside the run folder: {relative}")
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)

    def write_shard(self, task_id: str, ds: Any, stamp: dict[str, str]) -> Path:
        path = self.shard_dir / f"{task_id}.nc"
        write_shard(path, ds, stamp)
        return path


def _flock(fd: int, kind: int, tries: int = 1) -> bool:
    """Take an flock of ``kind`` on ``fd`` without waiting (``tries`` times, 20 ms apart); whether it was taken."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(0.02)
    return False
