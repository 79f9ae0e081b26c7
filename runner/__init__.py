"""runner: declarative interpretability experiments on small transformers and gridworld agents.

A spec (YAML) names a model, its data, an intervention, a sweep grid and metrics;
``run`` computes every grid point and writes one labelled xarray Dataset.

>>> ds = runner.run("specs/tiny.yaml")
>>> ds.kl.dims
('coefficient', 'layer', 'sample')
>>> bool((ds.kl.sel(coefficient=0.0) == 0).all())
True
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__version__ = "0.1.0"

from runner.errors import RunnerError
from runner.spec import load_spec


def compile_plan(spec: str | Path, **kwargs: Any) -> Any:
    """The Plan of a spec file: its grid points, coordinates and tasks, every check made. Writes nothing.

    >>> plan = runner.compile_plan("specs/tiny.yaml")
    >>> plan.dims, len(plan), plan.point(0).coords
    (['coefficient', 'layer'], 6, {'coefficient': -2.0, 'layer': 0})
    """
    from runner.plan import compile_plan as _compile

    return _compile(spec, **kwargs)


def run(spec: str | Path, *, executor: str | None = None, address: str | None = None,
        out: str | Path | None = None, fresh: bool = False) -> Any:
    """The result Dataset of a spec, computing the points not finished before (a rerun resumes).

    >>> ds = runner.run("specs/tiny.yaml")
    >>> dict(ds.sizes)
    {'coefficient': 3, 'layer': 2, 'sample': 4, 'vocab': 20}
    """
    from runner.execute.driver import execute

    return execute(compile_plan(spec, out=out), executor=executor, address=address, fresh=fresh).dataset


def load(x: str | Path) -> Any:
    """A run's result Dataset from a run name, spec path, run folder or .nc path.

    >>> ds = runner.load("tiny")
    >>> ds.attrs["name"], float(ds.coefficient[-1])
    ('tiny', 2.0)
    """
    from runner.results.load import load as _load

    return _load(x)


def plot(ds: Any, var: str | None = None, *, x: str | None = None, hue: str | None = None, col: str | None = None,
         out: str | Path | None = None, figure: dict[str, str] | None = None) -> Any:
    """A matplotlib Figure of one variable of a result, laid out from its dims; written to ``out`` if given.

    Samples and episodes are averaged (error bars: the standard error, or a stored interval), failed points
    left out; then one dim is a line, two a line per ``hue`` over a swept number or else a heatmap (diverging
    about 0 for signed values), three one panel per ``col``. ``var``, ``x``, ``hue`` and ``col`` default to the
    spec's ``figure:``, then to that rule (see ``runner.results.plot``).

    >>> import tempfile; from pathlib import Path
    >>> out = Path(tempfile.mkdtemp()) / "kl.png"
    >>> fig = runner.plot(runner.load("tiny"), out=out)
    >>> out.is_file(), fig.axes[0].get_xlabel(), len(fig.axes[0].containers)   # a line per layer, with error bars
    (True, 'coefficient', 2)
    """
    from runner.results.plot import plot as _plot

    return _plot(ds, var, x=x, hue=hue, col=col, out=out, figure=figure)


def load_model(x: str | Path) -> Any:
    """The model a spec names, or the agent in a checkpoint folder, ready for TransformerLens-style hooks.

    A token model is a TransformerLens ``TransformerBridge``; an agent has
    ``run_with_hooks`` / ``run_with_cache`` over its inputs and its bridge as ``.body``.

    >>> model = runner.load_model("specs/tiny.yaml")
    >>> logits = model.run_with_hooks(torch.tensor([[1, 2, 3]]), fwd_hooks=[])
    >>> tuple(logits.shape)
    (1, 3, 20)
    >>> agent = runner.load_model(agent_folder)
    >>> agent.config.architecture, agent.body.cfg.n_layers
    ('behavior_clone', 2)
    """
    from runner.execute.inputs import load_model as _load_model
    from runner.models.checkpoint import CheckpointError

    try:
        if Path(x).is_dir():
            return _load_model(_checkpoint(x))
        spec = load_spec(x).spec
        if spec.kind == "train":
            raise RunnerError(f"{x} is a train spec: load one of its checkpoints, results/{spec.name}/models/<point>")
        if spec.model.kind == "run":
            raise RunnerError(f"{x} reads every model of train run {spec.model.run!r}: load one of them, "
                              f"results/{spec.model.run}/models/<point>")
        return _load_model(spec.model)
    except (CheckpointError, FileNotFoundError) as exc:
        raise RunnerError(str(exc)) from None


def _checkpoint(folder: str | Path) -> Any:
    from runner.spec import CheckpointModel

    return CheckpointModel(checkpoint=str(Path(folder).resolve()))


def load_policy(path: str | Path, target_return: float | None = None) -> Any:
    """An agent that plays MiniGrid: ``reset()`` then ``act(obs, reward=0.0) -> action`` each step.

    >>> policy = runner.load_policy(agent_folder)
    >>> env = runner.envs.make_env("BabyAI-GoToRedBallGrey-v0")
    >>> obs, _ = env.reset(seed=7); policy.reset()
    >>> policy.act(obs) in range(7)
    True
    """
    from runner.models.policy import Policy

    return Policy(load_model(path), target_return)


__all__ = ["RunnerError", "compile_plan", "load", "load_model", "load_policy", "load_spec", "plot", "run",
           "__version__"]
