"""Interventions and their addresses: steer, patch, ablate, scale; steering-vector sources."""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from runner.envs.actions import ACTIONS, action_id
from runner.models.sites import ROLE
from runner.spec.base import Source, Strict, one_of
from runner.spec.sources import Data, FileData, RandomTokensData, TokensData, TrajectoryData

# ---------------------------------------------------------------- steering vectors

class FileVector(Source):
    file: str = Field(description="A .npy file holding one vector as long as the hooked activation's last dim "
                                  "(d_model; d_head at z / q / k / v; d_mlp at MLP hooks); a relative path resolves "
                                  "against the directory runner starts in.")


class MissionSelect(Source):
    mission: str = Field(description="Agents: the samples of the spec's data whose mission is exactly this.")


class WordSelect(Source):
    mission_word: str = Field(description="Agents: the samples of the spec's data whose mission has this word.")


class ViewSelect(Source):
    in_view: str = Field(description="Agents: the samples whose current view shows this object ('key' or 'red key').")


ContrastSide = one_of("contrast side", TokensData, RandomTokensData, TrajectoryData, FileData,
                      MissionSelect, WordSelect, ViewSelect)


class ContrastOptions(Strict):
    positive: ContrastSide = Field(description="Inputs, or a selection of the spec's data: the vector's plus side.")
    negative: ContrastSide = Field(description="Inputs, or a selection of the spec's data: subtracted.")


class ContrastVector(Source):
    contrast: ContrastOptions = Field(
        description="Mean activation difference at the site between two inputs or two selections of the data, "
                    "averaged over samples and over the intervention's positions (all positions for position: all)."
    )


class DirectionOptions(Strict):
    action: str | None = Field(None, description="Agents: steer toward this action's unembedding direction.")
    token: int | None = Field(None, ge=0, description="Token models: steer toward this token's unembedding direction.")
    against: str | int | None = Field(None, description="Subtract this action's (a name) or token's (an id) "
                                                        "direction instead; default: the mean of all the other "
                                                        "directions.")

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
        """(toward, against) as action or token ids; against is None for "all the others"."""
        toward = action_id(self.action) if self.action is not None else self.token
        against = action_id(self.against) if isinstance(self.against, str) else self.against
        return toward, against


class DirectionVector(Source):
    direction: DirectionOptions = Field(description="Difference of two unembedding directions (W_U columns): "
                                                    "pushes the readout toward one action or token.")


class NormLike(Strict):
    like: one_of("vector", FileVector, ContrastVector, DirectionVector) = Field(  # type: ignore[valid-type]
        description="Another vector source: the random vector gets its norm (a control of the same size).")


class RandomVectorOptions(Strict):
    seed: int | None = Field(None, ge=0, description="Seed of the direction; default: the spec's seed.")
    norm: Literal["match"] | Annotated[float, Field(gt=0)] | NormLike | None = Field(
        None, description="Unit norm when absent; a number; 'match': the mean norm of the activation at the site, "
                          "head and positions steered, over the data; or {like: <vector source>}: that vector's norm.")


class RandomVector(Source):
    random: RandomVectorOptions = Field(description="A seeded random direction (a control for learned vectors).")


VectorSource = one_of("vector", FileVector, RandomVector, ContrastVector, DirectionVector)


# ---------------------------------------------------------------- interventions

class SymbolicPosition(Strict):
    """Agents: a token by its role, e.g. {token: state, timestep: -1} is the current state token."""

    token: Literal["state", "action", "rtg", "instruction"] = Field(description="Which token of the step.")
    timestep: int = Field(-1, description="Window timestep 1..K, or -1..-K counting back from the current one; "
                                          "for instruction, the word index.")


Role = Annotated[str, Field(pattern=ROLE)]
Position = Union[Literal["all", "last"], int, Annotated[list[int], Field(min_length=1)], SymbolicPosition, Role]


class Addressed(Strict):
    """Where an intervention acts; every kind shares this address and a coefficient."""

    hook: str = Field("resid_pre", description="TransformerLens hook, by short name (resid_pre, resid_mid, "
                                               "resid_post, attn_out, mlp_out; z, q, k, v, pattern; mlp_pre, mlp_post "
                                               "or pre, post; embed, pos_embed) or full name "
                                               "(blocks.1.hook_resid_pre, blocks.1.attn.hook_z).")
    layer: int | None = Field(None, ge=0, description="Block index (0-based); required with a block hook's short name; "
                                                      "none for embed and pos_embed (a full name carries its own).")
    head: int | None = Field(None, ge=0, description="Head index, for z / q / k / v / pattern hooks; absent: every head.")
    position: Position = Field("all", description="all | last | an index (negative counts from the end) | a list of "
                                                  "indices | agents: a role (I0 instruction word, R1 / S1 / A1 the "
                                                  "RTG, state, action of timestep 1..K) or {token, timestep}; for "
                                                  "pattern, the query position. A role a model lacks (R1 on a "
                                                  "behaviour clone) makes its points not_applicable.")
    coefficient: float = Field(1.0, description="How much of the intervention: 0 leaves the model untouched.")


class Steer(Addressed):
    """x + c·v at the addressed site."""

    kind: Literal["steer"] = Field(description="steer: add c·v to the activation.")
    vector: VectorSource = Field(description="Where v comes from: file | random | contrast | direction.")


class Scale(Addressed):
    """(1 + c)·x at the addressed site."""

    kind: Literal["scale"] = Field(description="scale: multiply the activation by 1 + c (c = -1 zeroes it).")


class Ablate(Addressed):
    """x + c·(r − x), r the zero, mean or resampled activation at the site."""

    kind: Literal["ablate"] = Field(description="ablate: move the activation towards a reference r.")
    method: Literal["zero", "mean", "resample"] = Field(
        "mean", description="zero: r = 0; mean: r = the mean over the data's samples at that site and position; "
                            "resample: r = the activation of another sample (a seeded permutation of the samples).")
    seed: int | None = Field(None, ge=0, description="resample: seed of the permutation; default: the spec's seed.")


class CellEdit(Strict):
    row: int = Field(ge=0, le=6, description="First index of the 7x7 view as MiniGrid stores it (image[row, col] is "
                                             "cell [x, y]): x, left to right across the view; the agent is at [3, 6].")
    col: int = Field(ge=0, le=6, description="Second index of the 7x7 view: y, from the far edge (0) to the agent's "
                                             "own row (6).")
    object: str | None = Field(None, description="New object: ball, box, key, door, wall, empty, ...")
    colour: str | None = Field(None, description="New colour: red, green, blue, purple, yellow, grey.")


class SameOptions(Strict):
    target_return: float | None = Field(None, description="Decision transformers: the RTG tokens conditioned on this return.")
    swap_word: list[str] | None = Field(None, min_length=2, max_length=2,
                                        description="[from, to]: every mission with the word 'from' replaced by 'to'.")
    edit_cell: CellEdit | None = Field(None, description="One cell of every observation's 7x7 view changed.")

    @model_validator(mode="after")
    def _something(self) -> "SameOptions":
        if self.target_return is None and self.swap_word is None and self.edit_cell is None:
            raise ValueError("same: needs at least one change (target_return, swap_word or edit_cell)")
        return self


class SameData(Data):
    same: SameOptions = Field(description="Agents: the spec's own trajectories with one thing changed (a patching "
                                          "counterfactual that pairs up with data sample by sample).")

    agent_data: ClassVar[bool] = True


PatchSource = one_of("source", TokensData, RandomTokensData, TrajectoryData, FileData, SameData)


class Patch(Addressed):
    """x + c·(x_source − x): activations of a source run patched in."""

    kind: Literal["patch"] = Field(description="patch: move the activation towards the source run's.")
    source: PatchSource = Field(description="The inputs whose activations are patched in; same shape as data: "
                                            "tokens, trajectories, or same: {...} (the data, changed).")
    estimate: Literal["exact", "attribution"] = Field(
        "exact", description="exact: run the patched model. attribution: attribution patching, the first-order "
                             "estimate M(clean) + c·Σ grad_x M · (x_source − x) of each metric, the sum over the "
                             "addressed region (positions, the head's slice), the gradient taken on the clean run: "
                             "every point of a sweep over layer, position and head from one forward and one "
                             "backward pass per metric output (logit) per sample batch, in the same dims as exact "
                             "patching (sweep intervention.estimate: [exact, attribution] to set them side by "
                             "side). Metrics that are linear in the last position's logits only: logits, "
                             "action_logits, logit_diff, restored_fraction (its numerator estimated, both "
                             "baselines run).")


class Sender(Strict):
    """The component a path starts at: one head's output (z times its W_O) or one block's MLP output."""

    layer: int = Field(ge=0, description="Block index of the sender (0-based).")
    head: int | None = Field(None, ge=0, description="A head sender: its index; its write to the residual stream is "
                                                     "its z times its W_O (no bias).")
    mlp: bool = Field(False, description="true: the sender is the block's MLP (hook_mlp_out); give no head.")

    @model_validator(mode="after")
    def _head_or_mlp(self) -> "Sender":
        if (self.head is None) != self.mlp:
            raise ValueError("a sender is a head ({layer: L, head: H}) or an MLP ({layer: L, mlp: true}), "
                             + ("not both" if self.mlp else "give one of head or mlp: true"))
        return self


class Receiver(Strict):
    """The component a path ends at: a head's query, key or value input, or a block's MLP."""

    layer: int = Field(ge=0, description="Block index of the receiver: after the sender's (an MLP receiver may share "
                                         "a head sender's block: it reads that block's attention output).")
    head: int | None = Field(None, ge=0, description="A head receiver: its index (for k and v: its key/value head).")
    input: Literal["q", "k", "v"] | None = Field(
        None, description="Which of the head's inputs the path enters: q (default), k or v, recomputed through the "
                          "block's ln1 and W_Q / W_K / W_V.")
    mlp: bool = Field(False, description="true: the receiver is the block's MLP, its input (resid_mid, through ln2) "
                                         "recomputed; give no head.")

    @model_validator(mode="after")
    def _head_or_mlp(self) -> "Receiver":
        if (self.head is None) != self.mlp:
            raise ValueError("a receiver is a head's input ({layer: L, head: H, input: q | k | v}), an MLP "
                             "({layer: L, mlp: true}) or logits, "
                             + ("not both" if self.mlp else "give one of head or mlp: true"))
        if self.mlp and self.input is not None:
            raise ValueError("input names a head's q, k or v; an MLP receiver reads its block's residual stream")
        return self

    @property
    def reads(self) -> str:
        """What the receiver recomputes: q, k, v or mlp."""
        return "mlp" if self.mlp else self.input or "q"


def _receiver_kind(value: Any) -> str | None:
    return "logits" if isinstance(value, str) else "component" if isinstance(value, (dict, Receiver)) else None


ReceiverChoice = Annotated[  # told apart by shape, so an error names what is wrong with the one meant
    Union[Annotated[Literal["logits"], Tag("logits")], Annotated[Receiver, Tag("component")]],
    Discriminator(_receiver_kind, custom_error_type="receiver",
                  custom_error_message="expected logits, {layer: L, head: H, input: q | k | v} or "
                                       "{layer: L, mlp: true}"),
]


class PathPatch(Strict):
    """Path patching: a sender's change from the clean to the source run, carried along one path only."""

    kind: Literal["path_patch"] = Field(
        description="path_patch: the sender's residual write difference Δ (source run minus clean run) added to the "
                    "clean residual the receiver reads (entering its block; an MLP: its resid_mid); the receiver's "
                    "input (a head's q, k or v through ln1, or the MLP's output through ln2) is recomputed from it, "
                    "every other component kept at the clean run; the point's edit is x + c·(x_path − x) at the "
                    "receiver (blocks.L.attn.hook_q / k / v, head h; blocks.L.hook_mlp_out), then everything "
                    "downstream recomputes. receiver: logits adds c·Δ to the final residual (hook_resid_post of the "
                    "last block, before ln_final).")
    source: PatchSource = Field(description="The inputs of the source run; same shape as data: tokens, trajectories, "
                                            "or same: {...} (the data, changed).")
    sender: Sender = Field(description="{layer, head}: a head's output; {layer, mlp: true}: the block's MLP output.")
    receiver: ReceiverChoice = Field(
        description="{layer, head, input: q | k | v}: a later head's query, key or value input; {layer, mlp: true}: "
                    "a block's MLP; logits: the final residual stream (the sender's direct effect on the output).")
    position: Position = Field("all", description="The positions at which the sender's difference is carried (all | "
                                                  "last | an index | a list | agents: a role or {token, timestep}); "
                                                  "the receiver is changed at those positions only.")
    coefficient: float = Field(1.0, description="How much of the path: 0 is the clean run, 1 the path-patched run.")


Intervention = Annotated[Union[Steer, Scale, Ablate, Patch, PathPatch], Field(discriminator="kind")]

__all__ = ["NormLike", "FileVector", "RandomVectorOptions", "RandomVector", "MissionSelect", "WordSelect", "ViewSelect",
           "ContrastOptions", "ContrastVector", "DirectionOptions", "DirectionVector", "SymbolicPosition",
           "Addressed", "Steer", "Scale", "Ablate", "CellEdit", "SameOptions", "SameData", "Patch", "ContrastSide",
           "VectorSource", "Position", "PatchSource", "Sender", "Receiver", "PathPatch", "Intervention"]
