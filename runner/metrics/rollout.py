"""rollout: closed-loop episodes of an agent with its intervention applied at every step."""
from __future__ import annotations

from typing import Any

from runner.envs.rollout import rollout as play
from runner.metrics import Result, reduce
from runner.models.windows import AgentPolicy


def rollout(metric: Any, agent: Any, edits: list, target_return: float | None, device: str) -> Result:
    """Return, success and episode length of ``metric.episodes`` episodes, all played at once.

    Each step runs the agent once on every live episode; the point's edits apply to
    that whole batch (all its rows belong to this point).
    """
    hooks = [(site, lambda x, hook, fn=fn: fn(x)) for site, fn in edits]
    policy = AgentPolicy(agent, target_return, device, hooks=hooks)
    out = play(agent.config.env_id, policy, metric.episodes, metric.seed, metric.max_steps)
    return reduce(metric, {
        "return": (("episode",), out["return"], {"long_name": "episode return"}),
        "success": (("episode",), out["success"].astype("float32"), {"long_name": "episode reached its goal"}),
        "episode_length": (("episode",), out["episode_length"], {"units": "steps"}),
    })
