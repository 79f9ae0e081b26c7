"""The local executor: tasks run one after another in this process."""
from __future__ import annotations

from typing import Any, Iterator

from runner.errors import RunnerError


class LocalExecutor:
    name = "local"

    def __init__(self, execution: Any):
        self.execution = execution

    def __enter__(self) -> "LocalExecutor":
        if self.execution.gpus_per_task > 0:
            import torch

            if not torch.cuda.is_available():
                raise RunnerError(
                    f"execution.gpus_per_task is {self.execution.gpus_per_task:g} but this machine has no CUDA GPU "
                    "that torch can use.", hint="Set gpus_per_task: 0 to run on the CPU, or run on a GPU machine.")
        import runner.execute.task  # noqa: F401  (pay torch and TransformerLens imports before the clock starts)
        import transformer_lens.model_bridge  # noqa: F401
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def describe(self) -> str:
        threads = self.execution.cpus_per_task
        return f"the local executor ({threads} torch thread{'' if threads == 1 else 's'})"

    def map(self, tasks: list) -> Iterator[tuple[Any, Any]]:
        from runner.execute.task import run_task

        for task in tasks:
            yield task, run_task(task)
