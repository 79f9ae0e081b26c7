"""Spec -> Plan: the grid points with their coordinates, content ids and task chunks.

Everything that can be known about a spec without running a model is checked
when it is compiled (``compile``): layer, head and position in range, vector
lengths, files present. Compiling writes nothing and generates no data: checks
that need demonstrations not generated yet wait for ``Plan.check_deferred``,
which ``runner run`` calls before any point runs. A plan (``points``) holds each
point's id, not its spec, so a million-point grid plans in bounded memory. No
torch, no ray: this package must stay fast to import.

>>> plan = compile_plan("specs/tiny.yaml")
>>> plan.dims, plan.shape, len(plan), plan.n_tasks()
(['coefficient', 'layer'], (3, 2), 6, 1)
>>> plan.point(5).coords, plan.point(5).spec.intervention.layer
({'coefficient': 2.0, 'layer': 1}, 1)
"""
from __future__ import annotations

from runner.plan.compile import compile_plan
from runner.plan.points import PASS_TOKENS, Plan, Point, Task

__all__ = ["PASS_TOKENS", "Plan", "Point", "Task", "compile_plan"]
