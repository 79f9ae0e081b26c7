"""Checks of a path_patch against its model, torch-free: sender and receiver exist, and the path runs forward.

A receiver before its sender (a head in the sender's block or earlier; an MLP
before a head sender's block, or at or before an MLP sender's) cannot read the
sender's output: such a point is not applicable (in a grid over sender and
receiver layers its status is not_applicable and its values NaN; a spec whose
every point is so is refused).
"""
from __future__ import annotations

from typing import Any, Iterator

from runner.models.sites import NotApplicable, position_indices
from runner.plan.facts import data_shape

Found = Iterator[tuple[tuple, str]]  # (spec path, message)
HERE = ("intervention",)


def check_path(iv: Any, spec: Any, sizes: Any, inapplicable: type[str]) -> Found:
    """Yield (spec path, message) for every problem of a path_patch's sender, receiver and position; a message
    of type ``inapplicable`` (checks.Inapplicable) makes the point not applicable rather than wrong."""
    sender = iv.sender
    found = list(_in_range(HERE + ("sender",), sender.layer, sender.head, sizes, "q"))
    if sender.mlp and sizes.attn_only:
        found.append((HERE + ("sender", "mlp"), "the model is attn_only: its blocks have no MLP to send from"))
    if iv.receiver != "logits":
        receiver = iv.receiver
        found += _in_range(HERE + ("receiver",), receiver.layer, receiver.head, sizes, receiver.reads)
        if receiver.mlp and sizes.attn_only:
            found.append((HERE + ("receiver", "mlp"), "the model is attn_only: its blocks have no MLP to receive"))
        if not found:
            found += _order(sender, receiver, sizes, inapplicable)
    yield from found
    try:
        position_indices(iv.position, data_shape(spec.data, sizes)[1], sizes.roles)
    except NotApplicable as exc:
        yield HERE + ("position",), inapplicable(exc)
    except ValueError as exc:
        yield HERE + ("position",), str(exc)


def _order(sender: Any, receiver: Any, sizes: Any, inapplicable: type[str]) -> Found:
    """A receiver reads a sender's output only after it: a head from the next block on, an MLP also in a head's."""
    first = sender.layer + (0 if receiver.mlp and not sender.mlp else 1)   # the earliest block that can receive
    if receiver.layer >= first:
        return
    what = f"head {sender.head}" if sender.head is not None else "MLP"
    kind = "MLP" if receiver.mlp else "head"
    where = (f"{kind}s of layer {first} or later receive it" if first < sizes.n_layers else
             f"no {kind} of this {sizes.n_layers}-layer model receives it (logits do)")
    yield HERE + ("receiver", "layer"), inapplicable(
        f"the receiver (layer {receiver.layer}) must come after the sender ({what} of layer {sender.layer}): "
        f"{where}")


def _in_range(path: tuple, layer: int, head: int | None, sizes: Any, reads: str) -> Iterator[tuple[tuple, str]]:
    if layer >= sizes.n_layers:
        yield path + ("layer",), (f"layer {layer} is out of range: the model has {sizes.n_layers} layers "
                                  f"(0..{sizes.n_layers - 1})")
    if head is None:
        return
    kv = getattr(sizes, "n_kv_heads", None) if reads in ("k", "v") else None
    if head >= sizes.n_heads:
        yield path + ("head",), (f"head {head} is out of range: the model has {sizes.n_heads} heads "
                                 f"(0..{sizes.n_heads - 1})")
    elif kv and head >= kv:
        yield path + ("head",), (f"head {head} is out of range for input {reads}: the model's queries share {kv} "
                                 f"key/value heads (0..{kv - 1})")


def component_label(value: Any, receiver: bool = False) -> Any:
    """A swept sender or receiver as the result labels it: L0H2, L1H0.q, L1_mlp, logits (dla's names).

    >>> [component_label(v, receiver=True) for v in ({"layer": 1, "head": 0}, {"layer": 1, "head": 3, "input": "k"},
    ...                                              {"layer": 1, "mlp": True}, "logits")]
    ['L1H0.q', 'L1H3.k', 'L1_mlp', 'logits']
    >>> component_label({"layer": 0, "head": 2})
    'L0H2'
    """
    if not isinstance(value, dict):
        return value
    if value.get("mlp"):
        return f"L{value['layer']}_mlp"
    return f"L{value['layer']}H{value['head']}" + (f".{value.get('input') or 'q'}" if receiver else "")
