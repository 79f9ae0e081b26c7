"""The one primitive every intervention is: x ← x + c·d(x) on a region of one activation.

d(x) = offset + gain·x, so that each kind is data, not code:

    steer   offset v,          gain 0    x + c·v
    scale   no offset,         gain 1    (1 + c)·x
    ablate  offset r (or 0),   gain −1   x + c·(r − x)
    patch   offset x_source,   gain −1   x + c·(x_source − x)

At c = 0 the activation is returned unchanged; at c = 1 with gain −1 it is
exactly r (x + (r − x) can differ from r in the last bit).

>>> x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])            # [batch, pos, d]
>>> steer = Edit("blocks.0.hook_resid_pre", 0, "resid_pre", None, (1,), 2.0, torch.tensor([1.0, -1.0]), 0.0)
>>> apply(steer, x).tolist()
[[[1.0, 2.0], [5.0, 2.0]]]
>>> ablate = Edit("blocks.0.hook_resid_pre", 0, "resid_pre", None, None, 0.5, None, -1.0)
>>> apply(ablate, x).tolist()
[[[0.5, 1.0], [1.5, 2.0]]]
>>> apply(steer.shifted(1), x[:, 1:]).tolist()                 # the same edit on the positions from 1 on
[[[5.0, 2.0]]]
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Edit:
    """One point's edit: x[index] ← x[index] + coefficient·(offset + gain·x[index]) at hook ``site``.

    The region is the address: ``short`` hook kind, ``head`` and ``positions`` (sorted,
    None for all). ``offset`` has the region's shape (a batch of one broadcasts over
    rows) or is a vector broadcast over the region's positions (steer); None means zero.
    """

    site: str                  # full hook name, e.g. blocks.1.hook_resid_pre
    layer: int | None          # its block; None before the blocks (hook_embed, hook_pos_embed)
    short: str                 # the hook's short kind: resid_pre, z, pattern, ...
    head: int | None
    positions: tuple[int, ...] | None
    coefficient: float
    offset: torch.Tensor | None
    gain: float

    @property
    def index(self) -> tuple:
        """The region of the activation the address selects."""
        return region(self.short, self.head, None if self.positions is None else list(self.positions))

    @property
    def first(self) -> int:
        """The first position the edit changes: nothing before it differs from the clean run."""
        return 0 if self.positions is None else self.positions[0]

    @property
    def changes_nothing(self) -> bool:
        """Whether applying the edit returns the activation unchanged (coefficient 0, finite offset)."""
        return self.coefficient == 0 and (self.offset is None or bool(torch.isfinite(self.offset).all()))

    def shifted(self, by: int) -> Edit:
        """The same edit on an activation that starts at position ``by`` (positions before it left out)."""
        if not by:
            return self
        return dataclasses.replace(self, positions=tuple(p - by for p in self.positions))


def apply(edit: Edit, x: torch.Tensor) -> torch.Tensor:
    """``x`` with ``edit`` applied to its region (a new tensor; ``x`` is not changed)."""
    y = x.clone()
    region, c = x[edit.index], edit.coefficient
    if edit.gain == 0:
        y[edit.index] = region + c * edit.offset
    elif edit.gain == 1:
        y[edit.index] = region + c * region
    else:
        reference = torch.zeros_like(region) if edit.offset is None else edit.offset
        y[edit.index] = reference.expand_as(region) if c == 1 else region + c * (reference - region)
    return y


def region(short: str, head: int | None, positions: list[int] | None) -> tuple:
    """The index into an activation [batch, ...] that an address selects.

    z / q / k / v are [batch, pos, head, d_head]; pattern is [batch, head, query,
    key] (position selects queries); every other hook [batch, pos, ...].
    """
    pos = slice(None) if positions is None else positions
    if short == "pattern":
        return (slice(None), slice(None) if head is None else head, pos)
    return (slice(None), pos) if head is None else (slice(None), pos, head)
