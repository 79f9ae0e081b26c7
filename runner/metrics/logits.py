"""Metrics of the last position's output distribution: logits, probabilities, logit difference, KL."""
from __future__ import annotations

from typing import Annotated, Any, Iterator, Literal

from pydantic import ConfigDict, Field, model_validator

from runner.envs.actions import ActionName, action_id
from runner.metrics.base import Metric, Reading, Variable, register


class Logits(Metric):
    """Token models: logits at the last position."""

    kind: Literal["logits"]
    variables = {"logits": Variable(("sample", "vocab"), "logits at the last position")}
    families = ("tokens",)
    attributable = True


@register(Logits)
def logits(metric: Logits, r: Reading) -> dict[str, Any]:
    return {"logits": r.out}


class Probs(Metric):
    """Token models: softmax probabilities at the last position."""

    kind: Literal["probs"]
    variables = {"probs": Variable(("sample", "vocab"), "next-token probability at the last position", "1")}
    families = ("tokens",)


@register(Probs)
def probs(metric: Probs, r: Reading) -> dict[str, Any]:
    return {"probs": r.out.softmax(dim=-1)}


class ActionLogits(Metric):
    """Agents: logits of the current action."""

    kind: Literal["action_logits"]
    variables = {"action_logits": Variable(("sample", "vocab"), "logits of the current action")}
    families = ("agents",)
    attributable = True


@register(ActionLogits)
def action_logits(metric: ActionLogits, r: Reading) -> dict[str, Any]:
    return {"action_logits": r.out}


class ActionProbs(Metric):
    """Agents: probabilities of the current action."""

    kind: Literal["action_probs"]
    variables = {"action_probs": Variable(("sample", "vocab"), "probability of the current action", "1")}
    families = ("agents",)


@register(ActionProbs)
def action_probs(metric: ActionProbs, r: Reading) -> dict[str, Any]:
    return {"action_probs": r.out.softmax(dim=-1)}


class KL(Metric):
    """KL(p_clean || p_intervened) of the last position's distribution, per sample, in nats."""

    kind: Literal["kl"]
    variables = {"kl": Variable(("sample",), "KL(p_clean || p_intervened) at the last position", "nats")}


@register(KL)
def kl(metric: KL, r: Reading) -> dict[str, Any]:
    log_p, log_q = r.clean.log_softmax(dim=-1), r.out.log_softmax(dim=-1)
    return {"kl": (log_p.exp() * (log_p - log_q)).sum(dim=-1)}


class TwoChoices(Metric):
    """A metric over two choices: token ids (or, for pretrained models, their text) for token models, action names
    for agents."""

    tokens: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=2, max_length=2,
                                                             description="Token models: the two token ids [a, b].")
    actions: list[ActionName] | None = Field(None, min_length=2, max_length=2,
                                             description="Agents: the two actions [a, b] by name.")
    strings: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=2, max_length=2, description="Pretrained models: the two tokens [a, b] by their text, each "
                                                      "one token of the model's tokenizer, e.g. [' Paris', ' Rome'].")

    def choice_ids(self, model: Any = None) -> list[int] | None:
        """[a, b] as output ids, or None when no pair is given; strings need the ``model`` (its tokenizer)."""
        if self.tokens is not None:
            return self.tokens
        if self.strings is not None:
            if model is None:
                raise ValueError(f"metric {self.kind!r}: strings name tokens of a model's tokenizer: pass the model")
            from runner.models.pretrained import token_of

            return [token_of(model.tokenizer, s) for s in self.strings]
        return [action_id(a) for a in self.actions] if self.actions is not None else None

    def problems(self, sizes: Any, intervention: Any) -> Iterator[str]:
        for t in self.tokens or []:
            if t >= sizes.d_vocab:
                yield f"token id {t} is out of range for d_vocab {sizes.d_vocab}"
        if self.actions and not sizes.agent:
            yield f"metric {self.kind!r}: actions name an agent's choices; a token model takes tokens"
        if self.tokens and sizes.agent:
            yield f"metric {self.kind!r}: an agent's choices are actions: [left, right], not tokens"
        if self.strings and sizes.agent:
            yield f"metric {self.kind!r}: an agent's choices are actions: [left, right], not strings"
        elif self.strings and self.kind != "logit_diff":
            yield f"metric {self.kind!r} takes its pair as token ids (tokens: [a, b]); strings: is logit_diff's"


class LogitDiff(TwoChoices):
    """logit[a] - logit[b] at the last position."""

    kind: Literal["logit_diff"]
    variables = {"logit_diff": Variable(("sample",))}
    attributable = True
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["tokens"]}, {"required": ["actions"]},
                                                           {"required": ["strings"]}]})

    @model_validator(mode="after")
    def _one_pair(self) -> "LogitDiff":
        if sum(pair is not None for pair in (self.tokens, self.actions, self.strings)) != 1:
            raise ValueError("logit_diff takes exactly one of tokens: [a, b] (token models), strings: [a, b] "
                             "(pretrained models: tokens by their text) or actions: [a, b] (agents)")
        return self

    def attrs(self, name: str) -> dict[str, str]:
        a, b = [repr(s) for s in self.strings] if self.strings else (self.actions or self.tokens)
        return {"long_name": f"logit[{a}] - logit[{b}] at the last position", **super().attrs(name)}


@register(LogitDiff)
def logit_diff(metric: LogitDiff, r: Reading) -> dict[str, Any]:
    a, b = metric.choice_ids(r.model)
    return {"logit_diff": r.out[:, a] - r.out[:, b]}
