"""The two kinds of spec, intervene and train, assembled from the parts beside this module.

Every model forbids unknown keys and is strict about types (a layer is an
integer, not the string "1"). A *source* (of a model, of data, of a steering
vector) is a mapping with exactly one key naming the kind of source. The parts
live in ``base``, ``sources``, ``interventions`` and ``metrics``; ``runner.spec``
exports every model of the language.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from runner.metrics import REGISTRY
from runner.spec.base import SLUG, Strict
from runner.spec.interventions import Intervention
from runner.spec.metrics import default_metrics, metric_union, metrics_description
from runner.spec.ppo import PPOOptions
from runner.spec.sources import AgentData, DataSource, ModelSource

# ---------------------------------------------------------------- execution

class Execution(Strict):
    """How a spec runs: where its tasks (chunks of grid points) go and what each may use. Changes no number."""

    executor: Literal["local", "ray"] = Field("local", description="local: tasks one after another in this process; "
                                                                  "ray: one Ray task per chunk of points. "
                                                                  "runner run --executor overrides it.")
    address: str | None = Field(None, description="ray: the cluster address (HOST:PORT, ray://HOST:PORT or auto); "
                                                  "absent: $RAY_ADDRESS, else a local Ray started for the run. "
                                                  "runner run --address overrides it.")
    gpus_per_task: float = Field(0, ge=0, description="GPUs per task (fractions allowed on ray); above 0 a task runs "
                                                      "on CUDA; refused before launch where there is none (local: no "
                                                      "CUDA GPU; ray: fewer GPUs in the cluster).")
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task (what Ray reserves); also the torch thread count "
                                                    "of a task.")
    points_per_task: int | Literal["auto"] = Field("auto", description="Grid points one task runs (they share "
                                                                       "folded forward passes); auto: 1 for a train "
                                                                       "spec, else enough to fill a pass, at least "
                                                                       "32, and at least 16 tasks for a large grid.")
    max_retries: int = Field(2, ge=0, description="ray: retries of a task whose worker died.")
    max_points: int = Field(10_000_000, ge=1, description="Refuse a grid of more points than this (a guard against "
                                                          "a typo that would run for days); raise it if you mean it.")

    @field_validator("points_per_task")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("points_per_task must be at least 1 (or auto)")
        return v


# ---------------------------------------------------------------- the run's default figure

class Figure(Strict):
    """The figure ``runner plot RUN`` draws when given no variable: what a researcher looks at first."""

    var: str | None = Field(None, description="The variable to plot (default: the first of success, logit_diff, "
                                              "restored_fraction, kl, ... the result holds).")
    x: str | None = Field(None, description="The dim along the x axis (default: a swept number such as coefficient).")
    hue: str | None = Field(None, description="The dim drawn as one line per value (a given hue means lines, "
                                              "never a heatmap).")
    col: str | None = Field(None, description="The dim drawn as one panel per value.")


# ---------------------------------------------------------------- the specs

class SpecBase(Strict):
    """Fields every spec kind shares."""

    name: str = Field(description="Slug naming the run folder results/<name>/: [a-z0-9][a-z0-9_-]*.")
    description: str = Field("", description="Free text: what this experiment shows.")
    seed: int = Field(0, ge=0, description="Base seed: the default seed of generated data (random_tokens, "
                                           "trajectories), random vectors and resample ablations, so every point "
                                           "reads the same inputs; with a train point's grid coordinates, the seed "
                                           "of its weights and batches.")
    sweep: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Cartesian grid: each key is a dotted path into this spec, each value a list, "
            "{linspace: [a, b, n]}, {logspace: [a, b, n]}, {range: [a, b]} or [a, b, step], "
            "or {values: [...], name: dim}; 'zip: [{path: axis}, ...]' moves axes together along one dim."
        ),
    )
    execution: Execution = Field(default_factory=Execution, description="How to run: executor and resources.")
    figure: Figure | None = Field(None, description="The run's default figure for `runner plot` (changes no number, "
                                                     "so not the run id).")

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if not re.fullmatch(SLUG[1:-1], name):  # Python's $ would accept a trailing newline
            raise ValueError("a name is a slug: lowercase letters, digits, '-' and '_', starting with a letter or digit")
        return name


class Spec(SpecBase):
    """kind: intervene — run a model on data, optionally intervened on, and measure."""

    kind: Literal["intervene"] = Field("intervene", description="intervene: run a model and measure.")
    model: ModelSource = Field(description="Exactly one model source: transformer | checkpoint | pretrained | run.")
    data: DataSource = Field(description="Exactly one data source, what the model reads: tokens | random_tokens "
                                         "(token models) | text (pretrained models) | trajectories | file "
                                         "(agents).")
    intervention: Intervention | None = Field(None, description="steer | scale | ablate | patch | path_patch, told "
                                                                "apart by kind; absent: a plain run of the model.")
    metrics: list[metric_union()] = Field(default_factory=default_metrics, min_length=1,  # type: ignore[valid-type]
                                          description=metrics_description())

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, metrics: list[Any]) -> list[Any]:
        kinds = [m.kind for m in metrics]
        dupes = sorted({k for k in kinds if kinds.count(k) > 1})
        if dupes:
            raise ValueError(f"metric {dupes[0]!r} is listed twice")
        return metrics


class AgentArchitecture(Strict):
    """The agent to build: a decision transformer or a behaviour clone on a TransformerLens body."""

    architecture: Literal["behavior_clone", "decision_transformer"] | None = Field(
        None, description="The token layout. behavior_clone: instruction, then S A per step; decision_transformer: "
                          "instruction, then R S A. Default: the algorithm's (bc and ppo: behavior_clone, dt: "
                          "decision_transformer); older specs name the algorithm by it.")
    n_layers: int = Field(2, ge=1, description="Transformer blocks.")
    d_model: int = Field(128, ge=1, description="Residual width.")
    n_heads: int = Field(4, ge=1, description="Attention heads; must divide d_model.")
    d_mlp: int | None = Field(None, ge=1, description="MLP width; default 4 * d_model.")
    context: int = Field(8, ge=1, description="Timesteps in the context window.")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field("gelu", description="MLP activation.")
    init_seed: int | None = Field(None, ge=0, description="Weight initialisation seed; default: the point's seed "
                                                          "(from the spec's seed and the point's grid coordinates).")

    @model_validator(mode="after")
    def _heads_divide(self) -> "AgentArchitecture":
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        return self


class TrainOptions(Strict):
    """The optimiser loop: AdamW on the cross-entropy of the demonstrated action at every state token."""

    steps: int = Field(2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(64, ge=1, description="Windows per step, each of context timesteps ending at a step "
                                                  "drawn at random from the demonstrations.")
    lr: float = Field(3.0e-4, gt=0, description="AdamW peak learning rate (linear warm-up, then cosine decay to a "
                                                "tenth of it).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup: int = Field(100, ge=0, description="Steps of linear warm-up to lr.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    log_every: int = Field(25, ge=1, description="Record the loss every this many steps (and at the last).")


class EvalOptions(Strict):
    """Closed-loop episodes of each trained agent, beside a uniformly random policy's on the same env seeds."""

    episodes: int = Field(100, ge=0, description="Closed-loop evaluation episodes after training (0: none).")
    seed: int = Field(1_000_000, ge=0, description="Episode e uses env seed seed + e: keep it apart from training seeds.")
    target_return: float | None = Field(None, description="decision_transformer: return to condition on; default 1.")
    max_steps: int | None = Field(None, ge=1, description="Truncate evaluation episodes; default: the env's limit.")
    sampling: Literal["greedy", "sample"] = Field("greedy", description="greedy: the most probable action at every "
                                                                        "step; sample: drawn from the policy (seeded "
                                                                        "per episode), as CleanRL evaluates PPO.")


ALGORITHM_OF = {"behavior_clone": "bc", "decision_transformer": "dt"}
LAYOUT_OF = {"bc": "behavior_clone", "dt": "decision_transformer", "ppo": "behavior_clone"}


class TrainSpec(SpecBase):
    """kind: train — generate or read trajectories (or play an env), train an agent per grid point, evaluate it."""

    kind: Literal["train"] = Field(description="train: fit agents.")
    algorithm: Literal["bc", "dt", "ppo"] | None = Field(
        None, description="bc: behaviour cloning of the demonstrations; dt: a decision transformer on them; ppo: "
                          "online RL (PPO, as CleanRL's ppo.py) in data: {env: ...}. Sweepable (a dim of the run). "
                          "Default: from model.architecture (behavior_clone: bc, decision_transformer: dt).")
    data: AgentData = Field(description="bc, dt: the demonstrations, trajectories from a policy or an .npz file; "
                                        "ppo: env, the environment it plays.")
    model: AgentArchitecture = Field(description="What to build.")
    train: TrainOptions = Field(default_factory=TrainOptions, description="bc, dt: optimiser settings.")
    ppo: PPOOptions = Field(default_factory=PPOOptions, description="ppo: rollout, objective and optimiser settings.")
    eval: EvalOptions = Field(default_factory=EvalOptions, description="Evaluation episodes after training.")

    @property
    def trains(self) -> str | None:
        """The algorithm this spec trains: algorithm, else the one model.architecture names (None: neither given)."""
        return self.algorithm or ALGORITHM_OF.get(self.model.architecture or "")

    @property
    def layout(self) -> str:
        """The agent's token layout: model.architecture, else the algorithm's."""
        return self.model.architecture or LAYOUT_OF.get(self.trains or "", "behavior_clone")


SPEC_KINDS: dict[str, type[SpecBase]] = {"intervene": Spec, "train": TrainSpec}
_built_with = REGISTRY.version


def spec_kinds() -> dict[str, type[SpecBase]]:
    """The spec models by kind, ``Spec`` rebuilt first if a metric was registered since it was built."""
    global _built_with
    if REGISTRY.version != _built_with:
        field = Spec.model_fields["metrics"]
        field.annotation = list[metric_union()]  # type: ignore[valid-type]
        field.description = metrics_description()
        Spec.model_rebuild(force=True)
        _built_with = REGISTRY.version
    return SPEC_KINDS

