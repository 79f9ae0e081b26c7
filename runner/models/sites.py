"""Hook addressing without torch: short TransformerLens names -> full hook names, widths and positions.

Both ``runner plan`` (to check an address before anything runs) and the
interventions (to hook the model) use this table, so they cannot disagree.
``attn_scores`` is refused here, and only here: TransformerLens 4's bridge
discards edits at that hook (address the attention weights through ``pattern``).

>>> sizes = ModelSizes.of_transformer(n_layers=2, d_model=32, n_heads=4, d_vocab=20, n_ctx=16)
>>> site = resolve_site("z", 1, sizes)
>>> site.name, site.layer, site.width(sizes)
('blocks.1.attn.hook_z', 1, 8)
>>> position_indices(-1, 8), position_indices([0, 2], 8), position_indices("all", 8)
([7], [0, 2], None)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runner.models.sizes import ModelSizes

_BLOCK = {"resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"}
_ATTN = {"z", "q", "k", "v", "pattern"}
_MLP = {"pre": "mlp.hook_pre", "post": "mlp.hook_post", "mlp_pre": "mlp.hook_pre", "mlp_post": "mlp.hook_post"}
_GLOBAL = {"embed": "hook_embed", "pos_embed": "hook_pos_embed"}
_NEEDS_MLP = {"resid_mid", "mlp_out", "pre", "post", "mlp_pre", "mlp_post"}
HEAD_HOOKS = ("z", "q", "k", "v", "pattern")
SHORT_NAMES = sorted(_BLOCK | _ATTN | set(_MLP) | set(_GLOBAL))

_FULL = re.compile(r"^blocks\.(\d+)\.(?:(attn|mlp)\.)?hook_(\w+)$")


class SiteError(ValueError):
    """An address that names no site; ``field`` says which spec field is at fault (hook or layer)."""

    def __init__(self, message: str, field: str = "hook"):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Site:
    """A resolved hook: its full name, block index and short kind."""

    name: str
    layer: int | None
    short: str

    @property
    def has_heads(self) -> bool:
        return self.short in HEAD_HOOKS

    def width(self, sizes: ModelSizes) -> int:
        """The length a vector added at this site must have (its activation's last dim)."""
        if self.short in ("z", "q", "k", "v"):
            return sizes.d_head
        if self.short in ("pre", "post", "mlp_pre", "mlp_post"):
            return sizes.d_mlp
        if self.short == "pattern":
            raise ValueError(f"{self.name} holds attention weights over positions; it has no vector width")
        return sizes.d_model


def resolve_site(hook: str, layer: int | None, sizes: ModelSizes) -> Site:
    """The site a (hook, layer) address names in a model of ``sizes``; SiteError says why not."""
    if hook == "attn_scores" or hook.endswith("attn.hook_attn_scores"):
        raise SiteError("attn_scores cannot be intervened on: TransformerLens 4 discards edits there; "
                        "address the attention weights through pattern")
    if hook == "result" or hook.endswith("attn.hook_result"):
        raise SiteError("per-head attention results (hook_result) are not available: TransformerLens 4's native "
                        "bridge cannot compute them (use_attn_result); address the head through z, its output before W_O")
    if hook in _GLOBAL:
        if layer is not None:
            raise SiteError(f"hook {hook!r} is outside the blocks and takes no layer", "layer")
        return Site(_GLOBAL[hook], None, hook)
    if hook in _GLOBAL.values():
        return resolve_site(next(k for k, v in _GLOBAL.items() if v == hook), layer, sizes)
    full = _FULL.match(hook)
    if full:
        named_layer, group, short = int(full.group(1)), full.group(2), full.group(3)
        if layer is not None and layer != named_layer:
            raise SiteError(f"hook {hook!r} names layer {named_layer} but layer is {layer}; give one or the other", "layer")
        known = {None: _BLOCK, "attn": _ATTN, "mlp": {"pre", "post"}}[group]
        if short not in known:
            raise SiteError(f"no hook {hook!r} in TransformerLens blocks; known: {', '.join(_full_names(named_layer))}")
        hook, layer = (short if group != "mlp" else "mlp_" + short), named_layer
    if hook not in _BLOCK | _ATTN | set(_MLP):
        raise SiteError(f"unknown hook {hook!r}; short names are {', '.join(SHORT_NAMES)} "
                         "(or a full name such as blocks.0.hook_resid_pre)")
    if sizes.attn_only and hook in _NEEDS_MLP:
        raise SiteError(f"hook {hook!r} does not exist: the model is attn_only (no MLPs, no resid_mid)")
    if layer is None:
        raise SiteError(f"hook {hook!r} needs a layer (0..{sizes.n_layers - 1})", "layer")
    if not 0 <= layer < sizes.n_layers:
        raise SiteError(f"layer {layer} is out of range: the model has {sizes.n_layers} layers (0..{sizes.n_layers - 1})", "layer")
    if hook in _BLOCK:
        return Site(f"blocks.{layer}.hook_{hook}", layer, hook)
    if hook in _ATTN:
        return Site(f"blocks.{layer}.attn.hook_{hook}", layer, hook)
    return Site(f"blocks.{layer}.{_MLP[hook]}", layer, hook)


def _full_names(layer: int) -> list[str]:
    return ([f"blocks.{layer}.hook_{h}" for h in sorted(_BLOCK)] + [f"blocks.{layer}.attn.hook_{h}" for h in sorted(_ATTN)]
            + [f"blocks.{layer}.mlp.hook_pre", f"blocks.{layer}.mlp.hook_post"])


_ROLE_LETTER = {"state": "S", "action": "A", "rtg": "R"}
ROLE = r"^[IRSA][0-9]+$"   # a position by its role: I3 (instruction word 3), R1, S2, A1 (timestep 1..K)


class NotApplicable(ValueError):
    """An address the spec language allows that this model's layout lacks (an RTG token of a behaviour clone)."""


def role_order(label: str) -> tuple[int, int, int]:
    """Sequence order of a role label: instruction words first, then each timestep's R, S, A.

    >>> sorted(["S2", "R1", "A1", "I0", "S1", "R2"], key=role_order)
    ['I0', 'R1', 'S1', 'A1', 'R2', 'S2']
    """
    letter, number = label[0], int(label[1:])
    return (0, number, 0) if letter == "I" else (1, number, "RSA".index(letter))


def role_index(role: str, roles: tuple[str, ...] | None) -> int:
    """The position of a role label (``S2``) in an agent's window."""
    if roles is None:
        raise ValueError(f"position {role!r} names an agent's token by its role; a token model takes all, last or "
                         "indices")
    if role not in roles:
        why = " (a behaviour clone has no RTG tokens)" if role[0] == "R" and not any(r[0] == "R" for r in roles) else ""
        raise NotApplicable(f"this agent's window has no position {role}{why}: its positions are {' '.join(roles)}")
    return roles.index(role)


def symbolic_index(token: str, timestep: int, roles: tuple[str, ...] | None) -> int:
    """The position of ``{token, timestep}`` in an agent's window (timestep 1..K, or -1 = the current step)."""
    if roles is None:
        raise ValueError("a symbolic position ({token: ..., timestep: ...}) addresses agents; "
                         "a token model takes all, last or indices")
    if token == "instruction":
        words = [r for r in roles if r.startswith("I")]
        if not -len(words) <= timestep < len(words):
            raise ValueError(f"instruction word {timestep} is out of range: the agent reads {len(words)} words")
        return roles.index(words[timestep])
    context = max(int(r[1:]) for r in roles if r[0] == "S")
    step = timestep + context + 1 if timestep < 0 else timestep
    if not 1 <= step <= context:
        raise ValueError(f"timestep {timestep} is beyond the context: the window holds timesteps 1..{context} "
                         f"(or -1..-{context} from the current one)")
    label = f"{_ROLE_LETTER[token]}{step}"
    if label not in roles:
        if token == "rtg":
            raise NotApplicable(f"no rtg token at timestep {timestep} ({label}): a behaviour clone has no RTG tokens")
        raise ValueError(f"no {token} token at timestep {timestep} ({label}): the current step's action is what is "
                         "predicted")
    return roles.index(label)


def position_indices(position: Any, length: int, roles: tuple[str, ...] | None = None) -> list[int] | None:
    """Non-negative indices a position selects in a sequence of ``length``; None means all."""
    if position == "all":
        return None
    if position == "last":
        return [length - 1]
    if isinstance(position, str):  # a role: S2
        return [role_index(position, roles)]
    if not isinstance(position, (int, list, tuple)):  # {token: state, timestep: -1}
        return [symbolic_index(position.token, position.timestep, roles)]
    wanted = [position] if isinstance(position, int) else list(position)
    bad = [p for p in wanted if not -length <= p < length]
    if bad:
        raise ValueError(f"position {bad[0]} is out of range for sequences of length {length} "
                         f"(valid: {-length}..{length - 1}, all, last)")
    return sorted({p % length for p in wanted})
