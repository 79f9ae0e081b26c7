"""Metrics: what each grid point measures, each declared once (see ``runner.metrics.base``).

Adding a metric is one pydantic model and one function, registered together::

    class LastLogit(Metric):
        '''The largest logit at the last position.'''
        kind: Literal["last_logit"]
        variables = {"last_logit": Variable(("sample",), "largest logit at the last position")}

    @register(LastLogit)
    def last_logit(metric, r):
        return {"last_logit": r.out.max(dim=-1).values}

after which a spec may list ``last_logit`` under ``metrics:``. The built-in metrics
live in ``logits``, ``patching``, ``lens``, ``dla``, ``direction`` and ``rollout``; importing this package
registers them (and imports no torch).
"""
from __future__ import annotations

from runner.metrics.base import (REGISTRY, Loop, Metric, Reading, Result, Variable, family_problem, kinds_for,
                                 last_position, measure, play, reads, register)
from runner.metrics import direction, dla, lens, logits, patching, rollout  # noqa: F401  (registers them)

__all__ = ["REGISTRY", "Loop", "Metric", "Reading", "Result", "Variable", "family_problem", "kinds_for",
           "last_position", "measure", "play", "reads", "register"]
