"""Metrics: what to measure at each grid point."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BeforeValidator,
    Field,
    model_validator,
)

from runner.spec.base import ActionName, ACTIONS, Strict

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
