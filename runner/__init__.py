"""runner: declarative interpretability experiments on small transformers and gridworld agents.

>>> import runner
>>> ds = runner.run("specs/quickstart.yaml")            # doctest: +SKIP
>>> ds = runner.load("quickstart")                       # doctest: +SKIP
>>> model = runner.load_model("specs/quickstart.yaml")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from runner.errors import RunnerError
from runner.spec import load_spec


def compile_plan(spec: str | Path, **kwargs: Any) -> Any:
    """Compile a spec file into a Plan (see runner.plan.compile_plan)."""
    from runner.plan import compile_plan as _compile

    return _compile(spec, **kwargs)


def run(spec: str | Path, *, executor: str | None = None, address: str | None = None,
        out: str | Path | None = None, fresh: bool = False) -> Any:
    """Run a spec (resuming any finished shards) and return its result Dataset."""
    from runner.execute import execute

    return execute(compile_plan(spec, out=out), executor=executor, address=address, fresh=fresh).dataset


def load(x: str | Path) -> Any:
    """A run's result Dataset from a run name, spec path, run folder or .nc path."""
    from runner.results.load import load as _load

    return _load(x)


def load_model(x: str | Path) -> Any:
    """The TransformerLens model a spec's ``model:`` names, ready for hooks.

    >>> model = runner.load_model("specs/quickstart.yaml")          # doctest: +SKIP
    >>> logits = model.run_with_hooks(tokens, fwd_hooks=[...])        # doctest: +SKIP
    """
    from runner.models import get_model

    return get_model(load_spec(x).spec.model)


__all__ = ["RunnerError", "compile_plan", "load", "load_model", "load_spec", "run", "__version__"]
