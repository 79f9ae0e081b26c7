"""The Ray executor: one Ray task per chunk of points, gathered in completion order.

It connects to ``address`` or starts a local Ray (and stops it afterwards),
and refuses before submitting anything when the cluster cannot hold a task:
a task asking for a GPU that no node has would otherwise wait forever.
"""
from __future__ import annotations

import logging
import socket
from typing import Any, Iterator

from runner.errors import RunnerError


def _run_task_remote(task: Any) -> Any:
    from runner.execute.task import run_task  # imported once per worker process

    return run_task(task)


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse at once an address nothing listens on (ray.init would retry for minutes)."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not port.isdigit():
        raise RunnerError(f"Ray address {address!r} is not of the form HOST:PORT (or ray://HOST:PORT, or auto)")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise RunnerError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}",
                          hint="Start one with `ray start --head`, fix --address, or leave it out to start a local Ray.") from None


class RayExecutor:
    name = "ray"

    def __init__(self, execution: Any, address: str | None):
        self.execution = execution
        self.address = address
        self.started = False

    def __enter__(self) -> "RayExecutor":
        import ray

        if not ray.is_initialized():
            _check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, configure_logging=True)
            except Exception as exc:
                where = f"at {self.address}" if self.address else "locally"
                raise RunnerError(f"cannot start or reach a Ray cluster {where}: {exc}",
                                  hint="Check execution.address / --address, or leave it out to start a local Ray.") from None
            self.started = True
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

    def map(self, tasks: list) -> Iterator[tuple[Any, Any]]:
        import ray

        from runner.execute.task import failed_result

        ex = self.execution
        remote = ray.remote(_run_task_remote).options(
            num_cpus=ex.cpus_per_task, num_gpus=ex.gpus_per_task, max_retries=ex.max_retries, retry_exceptions=False)
        pending = {remote.remote(task): task for task in tasks}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        yield task, ray.get(ref)
                    except ray.exceptions.RayError as exc:
                        yield task, failed_result(task, f"Ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
