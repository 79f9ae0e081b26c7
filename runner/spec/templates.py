"""Starter specs for ``runner init KIND``: commented, and each one validates as written.

Each begins with the yaml-language-server modeline, so that an editor completes keys
and shows every field's description (see ``runner.spec.schema``).

>>> sorted(TEMPLATES)
['ablate', 'patch', 'rtg', 'steer', 'train']
>>> starter("steer", "schema.json").splitlines()[:2]
['# yaml-language-server: $schema=schema.json', '# A steering-vector coefficient x layer scan on a small token transformer.']
"""
from __future__ import annotations

import os
from pathlib import Path

from runner.spec.schema import SCHEMA_FILE, modeline

STEER = """\
# A steering-vector coefficient x layer scan on a small token transformer.
# At each point, c·v is added to the residual stream at one layer, and the next-token
# distribution is compared with the clean run's. Runs in seconds: runner run {file}
name: steer-scan
description: Steering-vector coefficient x layer scan on a small token transformer.
# A randomly initialised TransformerLens model (same init_seed, same weights).
# A trained agent instead: model: {{run: agent}} (the train run `runner init train` writes).
model:
  transformer: {{n_layers: 2, d_model: 64, n_heads: 4, d_vocab: 50, n_ctx: 32, init_seed: 0}}
# What the model reads: 16 random sequences of 12 tokens, seeded by the spec's seed.
# Agents read episodes: data: {{trajectories: {{env: BabyAI-GoToRedBallGrey-v0, episodes: 20, seed: 500000}}}}
data:
  random_tokens: {{batch: 16, length: 12}}
intervention:
  kind: steer              # x + c·v at the hook
  hook: resid_pre          # short TransformerLens name, or full: blocks.0.hook_resid_pre
  layer: 0                 # swept below
  position: all            # all | last | an index | a list of indices (agents: {{token: state, timestep: -1}})
  coefficient: 1.0         # c, swept below; 0 leaves the model untouched
  vector:                  # v: the mean activation difference at the hook between two inputs
    contrast:
      positive: {{tokens: [[1, 2, 3, 4]]}}
      negative: {{tokens: [[5, 6, 7, 8]]}}
    # or {{random: {{seed: 0, norm: match}}}} (a control of the activation's size) | {{file: v.npy}}
    # | {{direction: {{token: 7}}}} (toward a token's unembedding; agents: {{action: left}})
sweep:                     # a Cartesian grid; each dim is named after its path's last part
  intervention.coefficient: {{linspace: [-4, 4, 9]}}
  intervention.layer: [0, 1]
# Per point: next-token probabilities, KL(clean || steered) in nats, logit[1] - logit[5].
# Agents: [action_probs, kl, {{rollout: {{episodes: 50}}}}] (closed-loop success with v added at every step).
metrics: [probs, kl, {{logit_diff: {{tokens: [1, 5]}}}}]
"""

PATCH = """\
# Activation patching, layer x position: the residual stream of a source run (the same
# inputs with one token changed) is put in place of the clean run's, one layer and
# position at a time; restored_fraction says how much of the source run's output
# comes back (0: none, 1: all). Runs in seconds: runner run {file}
name: patch-heatmap
description: Activation patching, layer x position, between inputs that differ in one token.
model:
  transformer: {{n_layers: 2, d_model: 64, n_heads: 4, d_vocab: 50, n_ctx: 32, init_seed: 0}}
# The clean inputs: one row per sample, all rows the same length.
data:
  tokens: [[3, 14, 15, 9, 26, 5, 35, 8], [2, 7, 18, 28, 18, 28, 4, 5]]
intervention:
  kind: patch              # x + c·(x_source − x): c = 1 puts the source run's activation in place
  hook: resid_pre          # or z with a head: for a layer x position x head map
  layer: 0                 # swept below
  position: 0              # swept below
  coefficient: 1.0
  source:                  # the same shape as data, paired sample by sample: token 2 changed
    tokens: [[3, 14, 20, 9, 26, 5, 35, 8], [2, 7, 30, 28, 18, 28, 4, 5]]
    # agents: {{same: {{swap_word: [red, blue]}}}} (the data's own episodes, one mission word swapped)
sweep:
  intervention.layer: {{range: [0, 2]}}
  intervention.position: {{range: [0, 8]}}
# restored_fraction without a pair follows the logit of the source run's top choice;
# {{restored_fraction: {{tokens: [a, b]}}}} follows logit[a] - logit[b] instead.
metrics: [restored_fraction, kl]
"""

ABLATE = """\
# Mean ablation of every attention head in turn, with closed-loop success: which heads
# does the agent need? Each point replaces one head's output (hook z) by its mean over
# the data's samples, at every step of the episodes it plays.
#   runner init train && runner run train.yaml    (the agent this spec measures)
#   runner run {file}
name: head-ablation
description: Closed-loop success of a trained agent with each attention head mean-ablated.
# Every model of the train run results/agent/; a grid in that run becomes dims here.
model: {{run: agent}}
# Held-out bot episodes (seeds apart from the training ones): the samples the mean is taken over.
data:
  trajectories: {{env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 50, seed: 2000000}}
intervention:
  kind: ablate             # x + c·(r − x): c = 1 replaces the activation by r
  method: mean             # r: zero | mean (over the data's samples) | resample (another sample's)
  hook: z                  # a head's output, before W_O
  layer: 0                 # swept below
  head: 0                  # swept below
  position: all
  coefficient: 1.0
sweep:
  intervention.layer: {{range: [0, 2]}}
  intervention.head: {{range: [0, 4]}}
metrics:
  - {{action_probs: {{reduce: mean}}}}                          # the action distribution on the data, averaged
  - {{rollout: {{episodes: 50, seed: 3000000, reduce: mean}}}}  # closed loop: success, return, episode length
"""

TRAIN = """\
# Train a small decision transformer to imitate the BabyAI bot on GoToRedBallGrey
# ("go to the red ball" among grey objects), then evaluate it in closed-loop episodes
# on unseen seeds. A few minutes on 2 CPU cores: runner run {file}
# The agent lands in results/agent/models/; specs use it as model: {{run: agent}}.
name: agent
kind: train
description: A decision transformer imitating the BabyAI bot on GoToRedBallGrey.
data:
  # The bot plays 3000 episodes (cached under results/.cache); epsilon replaces each of its
  # actions by a random one with probability epsilon[e % 6] in episode e, so that returns
  # cover the whole range: a decision transformer must see low and high returns to learn
  # what its return-to-go token means (one epsilon of 0.25 leaves the middle flat).
  trajectories: {{env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 3000, seed: 0,
                 epsilon: [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]}}
model:
  architecture: decision_transformer   # or behavior_clone (no return-to-go tokens)
  n_layers: 2
  d_model: 128
  n_heads: 4               # must divide d_model
  context: 4               # timesteps in the agent's window
train: {{steps: 1500, batch_size: 128, lr: 1.0e-3, warmup: 100}}   # AdamW, warm-up then cosine decay
eval: {{episodes: 100, target_return: 0.8}}    # the return the agent is asked for in evaluation
execution: {{cpus_per_task: 2}}
# sweep: {{model.n_layers: [1, 2]}} would train one agent per value; specs that use the run gain the dim.
"""

RTG = """\
# Return-to-go calibration of the decision transformer `runner init train` writes:
# does the return it achieves follow the return it is asked for? No intervention:
# the target return is a data field, swept like any other.
#   runner init train && runner run train.yaml    (the agent this spec measures)
#   runner run {file}
name: rtg-sweep
description: Achieved vs requested return of a decision transformer.
model: {{run: agent}}
data:
  # Held-out noisy-bot episodes, their RTG tokens relabelled with the target return;
  # closed-loop rollouts start from the target return too.
  trajectories: {{env: BabyAI-GoToRedBallGrey-v0, policy: bot, episodes: 20, seed: 2000000, epsilon: 0.25,
                 target_return: 0.9}}
sweep:
  data.trajectories.target_return: {{linspace: [0.1, 1.0, 10]}}
metrics: [action_probs, {{rollout: {{episodes: 100, seed: 3000000}}}}]
"""

TEMPLATES = {"steer": STEER, "patch": PATCH, "ablate": ABLATE, "train": TRAIN, "rtg": RTG}


def starter(kind: str, schema: str | Path, file: str = "SPEC.yaml") -> str:
    """The starter spec of ``kind``, its first line pointing yaml-language-server at ``schema``."""
    return modeline(schema) + "\n" + TEMPLATES[kind].format(file=file)


def schema_path(out: Path | None) -> str:
    """The schema.json a spec written to ``out`` should name: relative inside a runner checkout, else absolute.

    yaml-language-server resolves a relative path against the spec's own folder, so a spec
    in a clone of runner names ``../runner/spec/schema.json`` and keeps working when the
    clone moves; anywhere else the installed package's file is named by its absolute path.
    """
    here, schema = Path.cwd().resolve(), SCHEMA_FILE.resolve()
    if out is not None and schema.is_relative_to(here) and out.resolve().is_relative_to(here):
        return Path(os.path.relpath(schema, out.resolve().parent)).as_posix()
    return schema.as_posix()
