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
    """The model a spec path names, or the agent in a checkpoint folder, ready for hooks.

    A token model is a TransformerLens ``TransformerBridge``; an agent has
    ``run_with_hooks``/``run_with_cache`` over its inputs and its bridge as ``.body``.

    >>> model = runner.load_model("specs/quickstart.yaml")          # doctest: +SKIP
    >>> logits = model.run_with_hooks(tokens, fwd_hooks=[...])        # doctest: +SKIP
    >>> agent = runner.load_model("results/train-bc/models/seed=0")  # doctest: +SKIP
    """
    from runner.models import get_model
    from runner.models.checkpoint import CheckpointError, load_agent

    if Path(x).is_dir():
        try:
            return load_agent(x)
        except CheckpointError as exc:
            raise RunnerError(str(exc)) from None
    spec = load_spec(x).spec
    if spec.kind == "train":
        raise RunnerError(f"{x} is a train spec: load one of its checkpoints, results/{spec.name}/models/<point>")
    try:
        return get_model(spec.model)
    except (CheckpointError, FileNotFoundError) as exc:
        raise RunnerError(str(exc)) from None


def load_policy(path: str | Path, target_return: float | None = None) -> Any:
    """An agent that plays MiniGrid: ``reset()`` then ``act(obs, reward=0.0) -> action`` each step.

    >>> policy = runner.load_policy("results/train-bc/models/seed=0")    # doctest: +SKIP
    >>> obs, _ = env.reset(seed=7); policy.reset()                        # doctest: +SKIP
    >>> action = policy.act(obs)                                          # doctest: +SKIP
    """
    from runner.models.windows import Policy

    return Policy(load_model(path), target_return)


__all__ = ["RunnerError", "compile_plan", "load", "load_model", "load_policy", "load_spec", "run", "__version__"]
