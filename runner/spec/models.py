"""The spec language v1 as pydantic models: the schema is the documentation.

Every model forbids unknown keys and is strict about types (a layer is an
integer, not the string "1"). A *source* (of a model, of data, of a steering
vector) is a mapping with exactly one key naming the kind of source.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")  # MiniGrid's order: index = id
ActionName = Literal["left", "right", "forward", "pickup", "drop", "toggle", "done"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _single_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


def one_of(what: str, *models: type[BaseModel]) -> Any:
    """A union of single-key source models, told apart by their one key."""
    if len(models) == 1:
        return models[0]
    names = [next(iter(m.model_fields)) for m in models]
    members = tuple(Annotated[m, Tag(n)] for m, n in zip(models, names))
    return Annotated[
        Union[members],  # type: ignore[valid-type]
        Discriminator(
            _single_key,
            custom_error_type="one_source",
            custom_error_message=f"expected a mapping with exactly one {what} source: " + " | ".join(names),
        ),
    ]


# ---------------------------------------------------------------- models

class TransformerConfig(Strict):
    """A token transformer built natively by TransformerLens (random init)."""

    n_layers: int = Field(ge=1, description="Number of transformer blocks.")
    d_model: int = Field(ge=1, description="Width of the residual stream.")
    n_heads: int = Field(ge=1, description="Attention heads per block; must divide d_model unless d_head is given.")
    d_head: int | None = Field(None, ge=1, description="Width of one head; default d_model // n_heads.")
    d_mlp: int | None = Field(None, ge=1, description="MLP hidden width; default 4 * d_model.")
    d_vocab: int = Field(ge=2, description="Vocabulary size.")
    n_ctx: int = Field(ge=1, description="Maximum sequence length.")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field("gelu", description="MLP activation.")
    normalization: Literal["LN", "LNPre", "RMS", "RMSPre"] = Field("LN", description="Normalisation type.")
    attn_only: bool = Field(False, description="Blocks without MLPs.")
    init_seed: int = Field(0, ge=0, description="Seed of the weight initialisation: same seed, same weights.")


class TransformerModel(Strict):
    transformer: TransformerConfig = Field(description="A randomly initialised TransformerLens model.")


class CheckpointModel(Strict):
    checkpoint: str = Field(description="A folder holding model.safetensors + config.json (an agent runner trained).")


class RunModel(Strict):
    run: str = Field(pattern=SLUG, description="Every model of the train run results/<run>/; its grid becomes dims here.")


ModelSource = one_of("model", TransformerModel, CheckpointModel, RunModel)


# ---------------------------------------------------------------- data

class TokensData(Strict):
    tokens: list[list[Annotated[int, Field(ge=0)]]] = Field(
        min_length=1, description="Token ids, one row per sample; all rows the same length."
    )

    @field_validator("tokens")
    @classmethod
    def _rectangular(cls, rows: list[list[int]]) -> list[list[int]]:
        if any(len(r) == 0 for r in rows):
            raise ValueError("every row needs at least one token")
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"all rows must have the same length, got lengths {sorted({len(r) for r in rows})}")
        return rows


class RandomTokensOptions(Strict):
    batch: int = Field(ge=1, description="Number of samples.")
    length: int = Field(ge=1, description="Tokens per sample.")
    seed: int | None = Field(None, ge=0, description="Seed of the draw; default: the spec's seed.")


class RandomTokensData(Strict):
    random_tokens: RandomTokensOptions = Field(description="Uniformly random token ids in [0, d_vocab).")


class TrajectoryOptions(Strict):
    env: str = Field(description="A MiniGrid or BabyAI env id registered by minigrid, e.g. BabyAI-GoToLocal-v0.")
    policy: Literal["bot", "random"] = Field("bot", description="bot: minigrid's BabyAI bot (BabyAI levels only); random.")
    episodes: int = Field(ge=1, description="Number of episodes.")
    seed: int | None = Field(None, ge=0, description="Episode e uses env seed seed + e; default: the spec's seed.")
    max_steps: int | None = Field(None, ge=1, description="Truncate episodes here; default: the env's own limit.")
    epsilon: float = Field(0.0, ge=0, le=1, description="bot: each action is replaced by a random one with this probability.")
    target_return: float | None = Field(
        None, description="Decision transformers: condition RTG tokens on this return (less rewards already received) "
                          "instead of the episodes' own; closed-loop rollouts start from it too. Sweep it for an RTG scan.")


class TrajectoryData(Strict):
    trajectories: TrajectoryOptions = Field(description="Episodes generated by a policy (cached under results/.cache).")


class FileData(Strict):
    file: str = Field(description="An .npz of trajectories in runner's layout (see runner.envs.trajectories).")


DataSource = one_of("data", TokensData, RandomTokensData, TrajectoryData, FileData)
AgentData = one_of("data", TrajectoryData, FileData)


# ---------------------------------------------------------------- steering vectors

class FileVector(Strict):
    file: str = Field(description="A .npy file holding one vector as long as the hooked activation's last dim.")


class RandomVectorOptions(Strict):
    seed: int | None = Field(None, ge=0, description="Seed of the direction; default: the spec's seed.")
    norm: Literal["match"] | Annotated[float, Field(gt=0)] | None = Field(
        None, description="Unit norm when absent; a number; or 'match': the mean activation norm at the site over the data."
    )


class RandomVector(Strict):
    random: RandomVectorOptions = Field(description="A seeded random direction (a control for learned vectors).")


class MissionSelect(Strict):
    mission: str = Field(description="Agents: the samples of the spec's data whose mission is exactly this.")


class WordSelect(Strict):
    mission_word: str = Field(description="Agents: the samples of the spec's data whose mission has this word.")


class ViewSelect(Strict):
    in_view: str = Field(description="Agents: the samples whose current view shows this object ('key' or 'red key').")


ContrastSide = one_of("contrast side", TokensData, RandomTokensData, TrajectoryData, FileData,
                      MissionSelect, WordSelect, ViewSelect)


class ContrastOptions(Strict):
    positive: ContrastSide = Field(description="Inputs, or a selection of the spec's data: the vector's plus side.")
    negative: ContrastSide = Field(description="Inputs, or a selection of the spec's data: subtracted.")


class ContrastVector(Strict):
    contrast: ContrastOptions = Field(
        description="Mean activation difference at the site between two inputs or two selections of the data, "
                    "averaged over samples and over the intervention's positions (all positions for position: all)."
    )


class DirectionOptions(Strict):
    action: str | None = Field(None, description="Agents: steer toward this action's unembedding direction.")
    token: int | None = Field(None, ge=0, description="Token models: steer toward this token's unembedding direction.")
    against: str | int | None = Field(None, description="Subtract this action's (or token's) direction; "
                                                        "default: the mean direction of all the others.")

    @model_validator(mode="after")
    def _one_target(self) -> "DirectionOptions":
        if (self.action is None) == (self.token is None):
            raise ValueError("direction takes exactly one of action: NAME (agents) or token: ID (token models)")
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; actions are {', '.join(ACTIONS)}")
        if isinstance(self.against, str) and self.against not in ACTIONS:
            raise ValueError(f"unknown action {self.against!r}; actions are {', '.join(ACTIONS)}")
        return self

    def ids(self) -> tuple[int, int | None]:
        toward = ACTIONS.index(self.action) if self.action is not None else self.token
        against = ACTIONS.index(self.against) if isinstance(self.against, str) else self.against
        return toward, against


class DirectionVector(Strict):
    direction: DirectionOptions = Field(description="Difference of two unembedding directions (W_U columns): "
                                                    "pushes the readout toward one action or token.")


VectorSource = one_of("vector", FileVector, RandomVector, ContrastVector, DirectionVector)


# ---------------------------------------------------------------- interventions

class SymbolicPosition(Strict):
    """Agents: a token by its role, e.g. {token: state, timestep: -1} is the current state token."""

    token: Literal["state", "action", "rtg", "instruction"] = Field(description="Which token of the step.")
    timestep: int = Field(-1, description="Window timestep 1..K, or -1..-K counting back from the current one; "
                                          "for instruction, the word index.")


Position = Union[Literal["all", "last"], int, Annotated[list[int], Field(min_length=1)], SymbolicPosition]


class Addressed(Strict):
    """Where an intervention acts; every kind shares this address and a coefficient."""

    hook: str = Field("resid_pre", description="TransformerLens hook: short (resid_pre, attn_out, z, ...) or full (blocks.1.hook_resid_pre).")
    layer: int | None = Field(None, ge=0, description="Block index; required for block hooks given by short name.")
    head: int | None = Field(None, ge=0, description="Head index, for z / q / k / v / pattern / attn_scores hooks.")
    position: Position = Field("all", description="all | last | an index (negative counts from the end) | a list of "
                                                  "indices; for pattern / attn_scores, the query position.")
    coefficient: float = Field(1.0, description="How much of the intervention: 0 leaves the model untouched.")


class Steer(Addressed):
    """x + c·v at the addressed site."""

    kind: Literal["steer"] = Field(description="steer: add c·v to the activation.")
    vector: VectorSource = Field(description="Where v comes from: file | random | contrast.")


class Scale(Addressed):
    """(1 + c)·x at the addressed site."""

    kind: Literal["scale"] = Field(description="scale: multiply the activation by 1 + c (c = -1 zeroes it).")


class Ablate(Addressed):
    """x + c·(r − x), r the zero, mean or resampled activation at the site."""

    kind: Literal["ablate"] = Field(description="ablate: move the activation towards a reference r.")
    method: Literal["zero", "mean", "resample"] = Field(
        "mean", description="zero: r = 0; mean: r = the mean over the data's samples at that site and position; "
                            "resample: r = the activation of another sample (a seeded permutation).")
    seed: int | None = Field(None, ge=0, description="resample: seed of the permutation; default: the spec's seed.")


class CellEdit(Strict):
    row: int = Field(ge=0, le=6, description="Row of the 7x7 view as MiniGrid stores it (image[row, col]; the agent is at [3, 6]).")
    col: int = Field(ge=0, le=6, description="Column of the 7x7 view.")
    object: str | None = Field(None, description="New object: ball, box, key, door, wall, empty, ...")
    colour: str | None = Field(None, description="New colour: red, green, blue, purple, yellow, grey.")


class SameOptions(Strict):
    target_return: float | None = Field(None, description="Decision transformers: the RTG tokens conditioned on this return.")
    swap_word: list[str] | None = Field(None, min_length=2, max_length=2,
                                        description="[from, to]: every mission with the word 'from' replaced by 'to'.")
    edit_cell: CellEdit | None = Field(None, description="One cell of every observation changed.")

    @model_validator(mode="after")
    def _something(self) -> "SameOptions":
        if self.target_return is None and self.swap_word is None and self.edit_cell is None:
            raise ValueError("same: needs at least one change (target_return, swap_word or edit_cell)")
        return self


class SameData(Strict):
    same: SameOptions = Field(description="Agents: the spec's own trajectories with one thing changed (a patching "
                                          "counterfactual that pairs up with data sample by sample).")


PatchSource = one_of("source", TokensData, RandomTokensData, TrajectoryData, FileData, SameData)


class Patch(Addressed):
    """x + c·(x_source − x): activations of a source run patched in."""

    kind: Literal["patch"] = Field(description="patch: move the activation towards the source run's.")
    source: PatchSource = Field(description="The inputs whose activations are patched in; same shape as data: "
                                            "tokens, trajectories, or same: {...} (the data, changed).")


Intervention = Annotated[Union[Steer, Scale, Ablate, Patch], Field(discriminator="kind")]


# ---------------------------------------------------------------- metrics

class MetricBase(Strict):
    reduce: Literal["none", "mean"] = Field("none", description="mean: average over samples (episodes for rollout).")


class LogitsMetric(MetricBase):
    kind: Literal["logits"] = Field(description="Logits at the last position: dims (sample, vocab).")


class ProbsMetric(MetricBase):
    kind: Literal["probs"] = Field(description="Softmax probabilities at the last position: dims (sample, vocab).")


class TwoChoices(MetricBase):
    tokens: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=2, max_length=2,
                                                             description="Token models: the two token ids [a, b].")
    actions: list[ActionName] | None = Field(None, min_length=2, max_length=2,
                                             description="Agents: the two actions [a, b] by name.")

    def choice_ids(self) -> list[int] | None:
        return self.tokens if self.tokens is not None else (
            [ACTIONS.index(a) for a in self.actions] if self.actions is not None else None)


class LogitDiffMetric(TwoChoices):
    kind: Literal["logit_diff"] = Field(description="logit[a] - logit[b] at the last position: dims (sample,).")

    @model_validator(mode="after")
    def _one_pair(self) -> "LogitDiffMetric":
        if (self.tokens is None) == (self.actions is None):
            raise ValueError("logit_diff takes exactly one of tokens: [a, b] (token models) or actions: [a, b] (agents)")
        return self


class RestoredFractionMetric(TwoChoices):
    kind: Literal["restored_fraction"] = Field(
        description="patch: (m_patched - m_clean) / (m_source - m_clean) of m = logit[a] - logit[b] (or, without a "
                    "pair, the logit of the source run's top choice), per sample; both baselines are stored too.")


class KLMetric(MetricBase):
    kind: Literal["kl"] = Field(description="KL(p_clean || p_intervened) at the last position, nats: dims (sample,).")


class RolloutMetric(MetricBase):
    kind: Literal["rollout"] = Field(description="Agents: closed-loop episodes with the intervention applied at every "
                                                 "step: return, success, episode_length over dim episode.")
    episodes: int = Field(50, ge=1, description="Episodes, all played at once.")
    seed: int = Field(1_000_000, ge=0, description="Episode e uses env seed seed + e.")
    max_steps: int | None = Field(None, ge=1, description="Truncate episodes; default: the env's limit.")


class ResidNormMetric(MetricBase):
    kind: Literal["resid_norm"] = Field(description="L2 norm of the residual stream after each block at the last "
                                                    "position, intervened: dims (sample, layer_read).")


class LogitLensMetric(MetricBase):
    kind: Literal["logit_lens"] = Field(description="Logits (actions for agents) read from the residual after each "
                                                    "block through the final norm and unembedding, at the last "
                                                    "position: dims (sample, layer_read, vocab | action).")


class AttentionMetric(MetricBase):
    kind: Literal["attention"] = Field(description="Attention of the last position over all positions at chosen heads "
                                                   "(positions labelled by role for agents): dims (sample, attn_head, "
                                                   "position), attn_head labelled L{layer}H{head}.")
    heads: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]] = Field(
        min_length=1, description="[[layer, head], ...]: the heads to read.")


class ActionLogitsMetric(MetricBase):
    kind: Literal["action_logits"] = Field(description="Agents: logits of the current action: dims (sample, action).")


class ActionProbsMetric(MetricBase):
    kind: Literal["action_probs"] = Field(description="Agents: probabilities of the current action: dims (sample, action).")


def _metric_entry(value: Any) -> Any:
    """``logits`` -> ``{kind: logits}``; ``{logit_diff: {...}}`` -> ``{kind: logit_diff, ...}``."""
    if isinstance(value, str):
        return {"kind": value}
    if isinstance(value, dict) and len(value) == 1 and "kind" not in value:
        (name, options), = value.items()
        return {"kind": name, **(options or {})} if isinstance(options, dict) or options is None else value
    return value


Metric = Annotated[
    Union[LogitsMetric, ProbsMetric, LogitDiffMetric, KLMetric, ActionLogitsMetric, ActionProbsMetric, RolloutMetric,
          RestoredFractionMetric, ResidNormMetric, LogitLensMetric, AttentionMetric],
    Field(discriminator="kind"),
    BeforeValidator(_metric_entry),
]


# ---------------------------------------------------------------- execution

class Execution(Strict):
    executor: Literal["local", "ray"] = Field("local", description="local: in-process; ray: one Ray task per chunk of points.")
    address: str | None = Field(None, description="ray: a cluster address; absent starts a local Ray for the run.")
    gpus_per_task: float = Field(0, ge=0, description="GPUs per task (fractions allowed); refused before launch if the cluster has none.")
    cpus_per_task: int = Field(1, ge=1, description="CPUs per task; also the torch thread count of a task.")
    points_per_task: int | Literal["auto"] = Field("auto", description="Grid points one task runs; auto picks a chunk size.")
    max_retries: int = Field(2, ge=0, description="ray: retries of a task whose worker died.")

    @field_validator("points_per_task")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("points_per_task must be at least 1 (or auto)")
        return v


# ---------------------------------------------------------------- the specs

class SpecBase(Strict):
    """Fields every spec kind shares."""

    name: str = Field(description="Slug naming the run folder results/<name>/: [a-z0-9][a-z0-9_-]*.")
    description: str = Field("", description="Free text: what this experiment shows.")
    seed: int = Field(0, ge=0, description="Base seed; default of every seed field in the spec.")
    sweep: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Cartesian grid: each key is a dotted path into this spec, each value a list, "
            "{linspace: [a, b, n]}, {logspace: [a, b, n]}, {range: [a, b]} or [a, b, step], "
            "or {values: [...], name: dim}; 'zip: [{path: axis}, ...]' moves axes together along one dim."
        ),
    )
    execution: Execution = Field(default_factory=Execution, description="How to run: executor and resources.")

    @field_validator("name")
    @classmethod
    def _slug(cls, name: str) -> str:
        if not re.match(SLUG, name):
            raise ValueError("a name is a slug: lowercase letters, digits, '-' and '_', starting with a letter or digit")
        return name


class Spec(SpecBase):
    """kind: intervene — run a model on data, optionally intervened on, and measure."""

    kind: Literal["intervene"] = Field("intervene", description="intervene: run a model and measure.")
    model: ModelSource = Field(description="Exactly one model source.")
    data: DataSource = Field(description="Exactly one data source: what the model reads.")
    intervention: Intervention | None = Field(None, description="Absent: a plain run.")
    metrics: list[Metric] = Field(default_factory=lambda: [LogitsMetric(kind="logits")], min_length=1,
                                  description="What to measure: logits | probs | {logit_diff: {tokens: [a, b]}} | kl | "
                                              "action_logits | action_probs | {rollout: {episodes: N}}.")

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

    architecture: Literal["behavior_clone", "decision_transformer"] = Field(
        description="behavior_clone: instruction, then S A per step; decision_transformer: instruction, then R S A.")
    n_layers: int = Field(2, ge=1, description="Transformer blocks.")
    d_model: int = Field(128, ge=1, description="Residual width.")
    n_heads: int = Field(4, ge=1, description="Attention heads; must divide d_model.")
    d_mlp: int | None = Field(None, ge=1, description="MLP width; default 4 * d_model.")
    context: int = Field(8, ge=1, description="Timesteps in the context window.")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field("gelu", description="MLP activation.")
    init_seed: int | None = Field(None, ge=0, description="Weight initialisation seed; default: the point's seed.")

    @model_validator(mode="after")
    def _heads_divide(self) -> "AgentArchitecture":
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        return self


class TrainOptions(Strict):
    steps: int = Field(2000, ge=1, description="Optimiser steps.")
    batch_size: int = Field(64, ge=1, description="Windows per step.")
    lr: float = Field(3.0e-4, gt=0, description="AdamW peak learning rate (linear warm-up, cosine decay).")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup: int = Field(100, ge=0, description="Warm-up steps.")
    grad_clip: float = Field(1.0, gt=0, description="Gradient norm clip.")
    log_every: int = Field(25, ge=1, description="Record the loss every this many steps.")


class EvalOptions(Strict):
    episodes: int = Field(100, ge=0, description="Closed-loop evaluation episodes after training (0: none).")
    seed: int = Field(1_000_000, ge=0, description="Episode e uses env seed seed + e: keep it apart from training seeds.")
    target_return: float | None = Field(None, description="decision_transformer: return to condition on; default 1.")
    max_steps: int | None = Field(None, ge=1, description="Truncate evaluation episodes; default: the env's limit.")


class TrainSpec(SpecBase):
    """kind: train — generate or read trajectories, train an agent per grid point, evaluate it."""

    kind: Literal["train"] = Field(description="train: fit agents.")
    data: AgentData = Field(description="The demonstrations: trajectories from a policy, or an .npz file.")
    model: AgentArchitecture = Field(description="What to build.")
    train: TrainOptions = Field(default_factory=TrainOptions, description="Optimiser settings.")
    eval: EvalOptions = Field(default_factory=EvalOptions, description="Evaluation episodes after training.")


SPEC_KINDS: dict[str, type[SpecBase]] = {"intervene": Spec, "train": TrainSpec}


def spec_class(data: Any) -> type[SpecBase]:
    """The model of the spec kind that raw data declares (intervene when absent or unknown)."""
    kind = data.get("kind", "intervene") if isinstance(data, dict) else "intervene"
    return SPEC_KINDS.get(kind, Spec) if isinstance(kind, str) else Spec
