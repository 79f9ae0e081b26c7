"""What a model looks like from outside: its sizes and, for agents, the role of every position. No torch.

``runner validate`` checks addresses against these without loading any weights.

>>> sizes = ModelSizes.of_agent({"architecture": "behavior_clone", "n_layers": 2, "d_model": 32, "n_heads": 2,
...                              "context": 2, "mission_length": 2})
>>> sizes.agent, sizes.d_vocab, sizes.roles
(True, 7, ('I0', 'I1', 'S1', 'A1', 'S2'))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.envs.actions import N_ACTIONS


@dataclass(frozen=True)
class ModelSizes:
    """The sizes of a model that addresses (layer, head, position, vector width) are checked against."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    attn_only: bool = False
    roles: tuple[str, ...] | None = None   # agents: the role label of every position

    @property
    def agent(self) -> bool:
        """Whether the model is a gridworld agent (it reads trajectories, its outputs are actions)."""
        return self.roles is not None

    @classmethod
    def of_transformer(cls, n_layers: int, d_model: int, n_heads: int, d_vocab: int, n_ctx: int,
                       d_head: int | None = None, d_mlp: int | None = None, attn_only: bool = False) -> ModelSizes:
        """The sizes of a token transformer, defaults filled in as TransformerLens fills them."""
        return cls(n_layers, d_model, n_heads, d_head or d_model // n_heads, d_mlp or 4 * d_model, d_vocab, n_ctx,
                   attn_only)

    @classmethod
    def of_agent(cls, config: dict[str, Any]) -> ModelSizes:
        """The sizes of an agent from its config (the ``config`` of a checkpoint's config.json)."""
        roles = agent_roles(config["architecture"], config["mission_length"], config["context"])
        d_model, n_heads = config["d_model"], config["n_heads"]
        return cls(config["n_layers"], d_model, n_heads, d_model // n_heads, config.get("d_mlp") or 4 * d_model,
                   N_ACTIONS, len(roles), roles=roles)


def agent_roles(architecture: str, mission_length: int, context: int) -> tuple[str, ...]:
    """Role labels of an agent's positions: I0 .. I{m-1}, then R1 S1 A1 ... RK SK (no R for a behaviour clone).

    >>> agent_roles("decision_transformer", 1, 2)
    ('I0', 'R1', 'S1', 'A1', 'R2', 'S2')
    """
    step = ["R", "S", "A"] if architecture == "decision_transformer" else ["S", "A"]
    labels = [f"I{i}" for i in range(mission_length)] + [f"{r}{k}" for k in range(1, context + 1) for r in step]
    return tuple(labels[:-1])  # the window ends at the current state: its action is what is predicted
