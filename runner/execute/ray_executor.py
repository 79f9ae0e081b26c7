"""The Ray executor: one Ray task per chunk of points, gathered in completion order.

It connects to ``address`` or starts a local Ray (and stops it afterwards), and
refuses before submitting anything when the cluster cannot be used: nothing
listens at the address, what listens does not speak Ray's protocol (a probe
answers within seconds where ``ray.init`` would hang), the cluster wants an
authentication token the driver lacks, or it cannot hold a task (a task asking
for a GPU that no node has would otherwise wait forever). A cluster lost while
the run goes on stops it with EnvironmentFault (exit 3); finished shards are kept.

Workers need no shared disk: the files the points read inside the project
(checkpoints, trajectories, vectors, cached demonstrations) are put in Ray's
object store once, and a worker that does not see them at the driver's paths
with the same content writes them to a node-local folder and reads them there.
Tasks are submitted a few per CPU at a time, so a million-point grid never
sits in the driver's or the cluster's memory at once.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

from runner.errors import EnvironmentFault, RunnerError

PROBE_TIMEOUT = 5.0     # seconds a Ray (gRPC) server takes to answer a connection, at most
ALIVE_EVERY = 5.0       # seconds between checks that the cluster is still there while waiting
LOST_AFTER = 2          # consecutive failed checks that mean the cluster is gone
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


IN_FLIGHT_PER_SLOT = 2  # tasks submitted per task slot of the cluster: one running, one queued behind it


def _run_task_remote(task: Any, inputs: dict[str, tuple[str, Any]]) -> Any:
    import dataclasses

    import ray

    from runner.execute.task import run_task  # imported once per worker process

    base_dir = local_inputs(task.base_dir, inputs)
    result = run_task(task if base_dir == task.base_dir else dataclasses.replace(task, base_dir=base_dir))
    result.dataset.attrs["node"] = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:6]}"
    return result


_PROJECTS: dict[tuple[str, str], str] = {}  # (driver's project, inputs digest) -> where this worker reads them


def local_inputs(base_dir: str, inputs: dict[str, tuple[str, Any]]) -> str:
    """The project folder a worker reads the run's files from: the driver's, if it sees them unchanged, else a copy.

    ``inputs`` maps each file's path (relative to the project) to its sha256 and the object ref of its
    bytes. The copy is node-local (under the temp folder, named by the inputs' digest) and written once
    per node; files outside the project must exist on every node at the same path.
    """
    from runner.ids import content_id, file_sha256
    from runner.results.files import write_atomic

    key = (base_dir, content_id({label: sha for label, (sha, _) in inputs.items()}))
    if key not in _PROJECTS:
        def same(root: Path, label: str, sha: str) -> bool:
            path = root / label
            return path.is_file() and file_sha256(path) == sha

        project = Path(base_dir)
        if not all(same(project, label, sha) for label, (sha, _) in inputs.items()):
            import ray

            project = Path(tempfile.gettempdir()) / "runner-inputs" / key[1]
            for label, (sha, ref) in inputs.items():
                if not same(project, label, sha):
                    (project / label).parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(project / label, ray.get(ref))
        _PROJECTS[key] = str(project)
    return _PROJECTS[key]


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not port.isdigit():
        raise RunnerError(f"Ray address {address!r} is not of the form HOST:PORT (or ray://HOST:PORT, or auto)")
    return host or "127.0.0.1", int(port)


def speaks_grpc(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server at host:port answers an HTTP/2 preface with a SETTINGS frame, as gRPC (Ray) does."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        try:
            s.sendall(_HTTP2_PREFACE)
            header = b""
            while len(header) < 9:
                chunk = s.recv(9 - len(header))
                if not chunk:
                    return False
                header += chunk
        except OSError:  # a timeout or a reset: whatever it is, it is not Ray
            return False
    return header[3] == 0x04  # frame type SETTINGS


def check_address(address: str | None) -> None:
    """Refuse at once an address that nothing listens on, or where something other than Ray does."""
    if not address or address in ("auto", "local"):
        return
    host, port = _host_port(address)
    hint = "Start one with `ray start --head`, fix --address, or leave it out to start a local Ray."
    try:
        if not speaks_grpc(host, port):
            raise RunnerError(f"{address} is not a Ray cluster: something listens there but does not answer as "
                              f"Ray's GCS does (gRPC)", hint=hint)
    except OSError as exc:
        raise RunnerError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}", hint=hint) from None


@contextlib.contextmanager
def _stderr_to(path: str) -> Iterator[None]:
    """Send this process's stderr (Ray's C++ logs included) to a file for the block."""
    saved = os.dup(2)
    with open(path, "w") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def connect(address: str | None) -> None:
    """``ray.init`` at ``address`` (or a new local Ray); RunnerError that says why it failed, authentication included."""
    import ray

    options = dict(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                   configure_logging=True)
    where = f"at {address}" if address else "locally"
    if not address:  # starting a local Ray spawns processes: they must keep the real stderr
        try:
            ray.init(**options)
        except Exception as exc:
            raise RunnerError(f"cannot start a Ray cluster {where}: {exc}") from None
        return
    with tempfile.NamedTemporaryFile(prefix="runner-ray-", suffix=".log", delete=False) as log:
        path = log.name
    try:
        with _stderr_to(path):
            ray.init(**options)
    except Exception as exc:
        said = open(path, errors="replace").read()
        if "Unauthenticated" in said or "InvalidAuthToken" in said:
            raise RunnerError(f"the Ray cluster {where} refused this driver: it requires token authentication",
                              hint="Set RAY_AUTH_MODE=token (the token is read from RAY_AUTH_TOKEN or "
                                   "~/.ray/auth_token, as `ray start` wrote it).") from None
        last = next((line for line in reversed(said.splitlines()) if line.strip()), "")
        raise RunnerError(f"cannot reach a Ray cluster {where}: {exc}" + (f" ({last.strip()[:200]})" if last else ""),
                          hint="Check execution.address / --address, or leave it out to start a local Ray.") from None
    finally:
        os.unlink(path)


class RayExecutor:
    name = "ray"

    def __init__(self, execution: Any, address: str | None, files: dict[str, Path] | None = None):
        self.execution = execution
        self.address = address
        self.files = files or {}    # what the points read inside the project: label -> path on the driver
        self.started = False

    def __enter__(self) -> "RayExecutor":
        import ray

        if not ray.is_initialized():
            check_address(self.address)
            connect(self.address)
            self.started = True
        self.gcs = _host_port(ray.get_runtime_context().gcs_address)
        try:
            self._check_resources(ray.cluster_resources())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _check_resources(self, total: dict[str, float]) -> None:
        ex = self.execution
        where = self.address or "the local Ray cluster"
        if ex.gpus_per_task > total.get("GPU", 0):
            raise RunnerError(
                f"execution.gpus_per_task is {ex.gpus_per_task:g} but {where} has {total.get('GPU', 0):g} GPUs: "
                "its tasks would wait forever.", hint="Set gpus_per_task: 0, or point --address at a cluster with GPUs.")
        if ex.cpus_per_task > total.get("CPU", 0):
            raise RunnerError(
                f"execution.cpus_per_task is {ex.cpus_per_task} but {where} has {total.get('CPU', 0):g} CPUs: "
                "its tasks would wait forever.", hint="Lower cpus_per_task.")

    def __exit__(self, *exc: Any) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False

    def describe(self) -> str:
        import ray

        cpus = ray.cluster_resources().get("CPU", 0)
        return f"Ray ({self.address or 'local'}, {cpus:g} CPUs)"

    def alive(self) -> bool:
        """Whether the cluster's GCS still accepts connections."""
        try:
            socket.create_connection(self.gcs, timeout=2.0).close()
            return True
        except OSError:
            return False

    def _lost(self) -> EnvironmentFault:
        return EnvironmentFault(f"the Ray cluster at {self.address or 'this machine'} was lost (its GCS at "
                                f"{self.gcs[0]}:{self.gcs[1]} does not answer); the finished points are kept",
                                hint="Restart the cluster and rerun the same command to resume.")

    def _ship(self) -> dict[str, tuple[str, Any]]:
        """Every input file in the object store, once: label -> (sha256, ref)."""
        import ray

        from runner.ids import file_sha256

        return {label: (file_sha256(path), ray.put(path.read_bytes())) for label, path in self.files.items()}

    def slots(self) -> int:
        """Tasks the cluster can run at once."""
        import ray

        total = ray.cluster_resources()
        ex = self.execution
        slots = total.get("CPU", 1) // ex.cpus_per_task
        if ex.gpus_per_task:
            slots = min(slots, total.get("GPU", 0) // ex.gpus_per_task)
        return max(1, int(slots))

    def map(self, tasks: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        import ray

        from runner.execute.task import failed_result

        ex = self.execution
        remote = ray.remote(_run_task_remote).options(
            num_cpus=ex.cpus_per_task, num_gpus=ex.gpus_per_task, max_retries=ex.max_retries, retry_exceptions=False)
        inputs, window, tasks = self._ship(), IN_FLIGHT_PER_SLOT * self.slots(), iter(tasks)
        pending: dict[Any, Any] = {}
        failed_checks, last_check = 0, time.monotonic()
        try:
            while True:
                for task in itertools.islice(tasks, max(0, window - len(pending))):  # keep the cluster busy
                    pending[remote.remote(task, inputs)] = task
                if not pending:
                    break
                done, _ = ray.wait(list(pending), num_returns=1, timeout=ALIVE_EVERY)
                if not done or time.monotonic() - last_check > ALIVE_EVERY:
                    failed_checks, last_check = (0 if self.alive() else failed_checks + 1), time.monotonic()
                    if failed_checks >= LOST_AFTER:
                        raise self._lost()
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        yield task, ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        if not self.alive():
                            raise self._lost() from None
                        yield task, failed_result(task, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            if pending and self.alive():
                for ref in pending:
                    ray.cancel(ref, force=True)
