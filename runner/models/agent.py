"""Gridworld agents on a TransformerLens body: decision transformers and behaviour clones.

The agent embeds its own tokens and hands the residual stream to block 0 of a
``TransformerBridge``; the bridge's unembedding is the action head (d_vocab = 7
actions). Every block hook works unchanged (``blocks.1.hook_resid_pre``,
``blocks.0.attn.hook_z``, ...), and ``hook_embed`` / ``hook_pos_embed`` fire on
the token and timestep embeddings.

Sequence layout, always ending with the current state token::

    behavior_clone:        I0 .. I{m-1}  S1 A1  S2 A2 ... SK
    decision_transformer:  I0 .. I{m-1}  R1 S1 A1 ... RK SK

K is ``context`` timesteps, left-padded with a learned pad token when the
episode is younger than K; the action of step k is predicted at Sk.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
from torch import nn

from runner.envs.actions import N_ACTIONS
from runner.envs.encoding import OBS_ACTIVE, OBS_FEATURES
from runner.envs.vocab import WORDS
from runner.models.sizes import agent_roles
from runner.models.transformer import boot_native_body, run_from


@dataclass(frozen=True)
class AgentConfig:
    """Everything needed to rebuild an agent (stored as config.json beside the weights)."""

    architecture: str
    n_layers: int
    d_model: int
    n_heads: int
    context: int                 # timesteps in the window
    mission_length: int          # instruction tokens (0: no instruction prefix)
    max_timestep: int            # size of the timestep embedding table
    env_id: str = ""
    d_mlp: int | None = None
    act_fn: str = "gelu"
    init_seed: int = 0
    rtg_scale: float = 1.0       # RTG tokens read return / rtg_scale
    words: tuple[str, ...] = field(default_factory=lambda: tuple(WORDS))
    algorithm: str | None = None  # how it was trained: bc | dt | ppo (None: a checkpoint older than the field)
    value_head: bool = False     # a critic beside the unembedding (ppo), read from the same state token
    return_range: tuple[float, float] | None = None  # dt: lowest and highest episode return it was trained on

    @property
    def tokens_per_step(self) -> int:
        return 3 if self.architecture == "decision_transformer" else 2

    @property
    def n_ctx(self) -> int:
        return self.mission_length + self.tokens_per_step * self.context - 1

    def roles(self) -> list[str]:
        """The role label of every position: I0.., then R1 S1 A1 ... up to SK."""
        return list(agent_roles(self.architecture, self.mission_length, self.context))

    def state_positions(self) -> list[int]:
        offset = 1 if self.architecture == "decision_transformer" else 0
        return [self.mission_length + k * self.tokens_per_step + offset for k in range(self.context)]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["words"] = list(self.words)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "AgentConfig":
        data = dict(data)
        data["words"] = tuple(data.get("words", WORDS))
        if data.get("return_range") is not None:
            data["return_range"] = tuple(data["return_range"])
        return cls(**data)


@dataclass
class AgentInputs:
    """A batch of windows: what the agent reads. Shapes use B = batch, K = context."""

    mission: torch.Tensor      # [B, m] int64 word ids (0 = pad)
    obs: torch.Tensor          # [B, K, OBS_ACTIVE] int64 active observation features
    actions: torch.Tensor      # [B, K] int64 (the last step's action is never read)
    rtg: torch.Tensor          # [B, K] float32 return-to-go (decision transformer)
    timesteps: torch.Tensor    # [B, K] int64 step within the episode
    valid: torch.Tensor        # [B, K] bool, False for left padding

    def __len__(self) -> int:
        return self.obs.shape[0]

    def to(self, device: str) -> "AgentInputs":
        return AgentInputs(*(t.to(device) for t in self.tensors()))

    def tensors(self) -> Iterator[torch.Tensor]:
        yield from (self.mission, self.obs, self.actions, self.rtg, self.timesteps, self.valid)

    @staticmethod
    def cat(batches: list["AgentInputs"]) -> "AgentInputs":
        """Batches stacked along the sample dim."""
        return AgentInputs(*(torch.cat(parts) for parts in zip(*(b.tensors() for b in batches))))

    def repeat(self, n: int) -> "AgentInputs":
        return AgentInputs(*(t.repeat(n, *([1] * (t.dim() - 1))) for t in self.tensors()))


def _module_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A module's raw nn.Module state dict (every alias path the bridge exposes)."""
    return nn.Module.state_dict(module)


class Agent(nn.Module):
    """A DT or BC agent: own embeddings, TransformerLens body, unembedding as action head."""

    def __init__(self, config: AgentConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.body = boot_native_body(n_layers=config.n_layers, d_model=d, n_heads=config.n_heads, d_vocab=N_ACTIONS,
                                     n_ctx=config.n_ctx, d_mlp=config.d_mlp, act_fn=config.act_fn,
                                     init_seed=config.init_seed)
        generator = torch.Generator().manual_seed(config.init_seed)
        self.obs_embed = nn.EmbeddingBag(OBS_FEATURES, d, mode="sum")
        self.action_embed = nn.Embedding(N_ACTIONS, d)
        self.rtg_embed = nn.Linear(1, d)
        self.timestep_embed = nn.Embedding(config.max_timestep, d)
        self.word_embed = nn.Embedding(len(config.words), d)
        self.word_position = nn.Embedding(max(config.mission_length, 1), d)
        self.pad = nn.Parameter(torch.zeros(config.tokens_per_step, d))
        for module in (self.obs_embed, self.action_embed, self.timestep_embed, self.word_embed, self.word_position):
            with torch.no_grad():
                module.weight.normal_(0.0, 0.02, generator=generator)
        with torch.no_grad():
            self.obs_embed.weight.mul_(OBS_ACTIVE ** -0.5)  # a sum of 148 rows starts as small as one
        self.value_head = nn.Linear(d, 1) if config.value_head else None  # built last: other weights as without it
        if self.value_head is not None:
            with torch.no_grad():
                self.value_head.weight.normal_(0.0, d ** -0.5, generator=generator)
                self.value_head.bias.zero_()

    # ---------------------------------------------------------------- weights

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        """The agent's own parameters plus the body's canonical TransformerLens state dict."""
        own = {k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("body.")}
        return own | {f"body.{k}": v for k, v in self.body.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:
        body = {k[len("body."):]: v for k, v in state.items() if k.startswith("body.")}
        own = {k: v for k, v in state.items() if not k.startswith("body.")}
        self.body.load_state_dict(body, strict=strict)
        return nn.Module.load_state_dict(self, own | {f"body.{k}": v for k, v in _module_state(self.body).items()},
                                         strict=strict)

    # ---------------------------------------------------------------- TransformerLens-style surface

    @property
    def cfg(self) -> Any:
        return self.body.cfg

    @property
    def W_U(self) -> torch.Tensor:
        return self.body.W_U

    @property
    def blocks(self) -> Any:
        return self.body.blocks

    @property
    def ln_final(self) -> Any:
        return self.body.ln_final

    @property
    def unembed(self) -> Any:
        return self.body.unembed

    def hooks(self, fwd_hooks: list) -> Any:
        return self.body.hooks(fwd_hooks=fwd_hooks)

    def run_with_hooks(self, inputs: AgentInputs, fwd_hooks: list) -> torch.Tensor:
        with self.body.hooks(fwd_hooks=fwd_hooks):
            return self(inputs)

    def hook_names(self) -> list[str]:
        """Every hook name that can take a hook on this agent (the bridge lists a few it cannot)."""
        if not hasattr(self, "_hook_names"):
            usable = []
            for name in self.body.hook_dict:
                try:
                    with self.body.hooks(fwd_hooks=[(name, lambda x, hook: None)]):
                        usable.append(name)
                except Exception:
                    continue
            self._hook_names = usable
        return self._hook_names

    def run_with_cache(self, inputs: AgentInputs, names_filter: Any = None) -> tuple[torch.Tensor, dict]:
        """Logits and a dict of activations at the hook names ``names_filter`` accepts."""
        wanted = [n for n in self.hook_names() if names_filter is None or names_filter(n)]
        cache: dict[str, torch.Tensor] = {}
        hooks = [(n, lambda x, hook, n=n: cache.__setitem__(n, x.detach())) for n in wanted]
        return self.run_with_hooks(inputs, hooks), cache

    # ---------------------------------------------------------------- forward

    def embed(self, inputs: AgentInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings and timestep embeddings, both [B, n_ctx, d_model]."""
        c = self.config
        batch, k = inputs.actions.shape
        state = self.obs_embed(inputs.obs.reshape(batch * k, -1)).reshape(batch, k, -1)
        action = self.action_embed(inputs.actions)
        parts = [state, action]
        if c.architecture == "decision_transformer":
            parts.insert(0, self.rtg_embed(inputs.rtg.unsqueeze(-1) / c.rtg_scale))
        steps = torch.stack(parts, dim=2)                                    # [B, K, tps, d]
        valid = inputs.valid[:, :, None, None]
        steps = torch.where(valid, steps, self.pad.to(steps.dtype))
        time = self.timestep_embed(inputs.timesteps.clamp(0, c.max_timestep - 1))
        time = (time * inputs.valid[..., None]).unsqueeze(2).expand_as(steps)
        tokens = steps.reshape(batch, k * c.tokens_per_step, -1)[:, :-1]
        times = time.reshape(batch, k * c.tokens_per_step, -1)[:, :-1]
        if c.mission_length:
            positions = torch.arange(c.mission_length, device=tokens.device)
            words = self.word_embed(inputs.mission) + self.word_position(positions)
            tokens = torch.cat([words, tokens], dim=1)
            times = torch.cat([torch.zeros_like(words), times], dim=1)
        return tokens, times

    def forward(self, inputs: AgentInputs) -> torch.Tensor:
        """Action logits at every position, [B, n_ctx, 7]."""
        tokens, times = self.embed(inputs)
        return self.run_from(self.body.embed.hook_out(tokens) + self.body.pos_embed.hook_out(times), 0)

    def run_from(self, resid: torch.Tensor, layer: int, positions: slice = slice(None),
                 last_only: bool = False) -> torch.Tensor:
        """Action logits at ``positions`` from the residual stream entering block ``layer``."""
        return run_from(self.body, resid, layer, positions, last_only=last_only)

    def policy_and_value(self, inputs: AgentInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits [B, 7] and value [B] at the last state token (agents with a value head: ppo).

        The value head reads the residual after ``ln_final``, as the unembedding does; hooks fire as in ``forward``.
        """
        if self.value_head is None:
            raise ValueError(f"this {self.config.algorithm or self.config.architecture} agent has no value head")
        tokens, times = self.embed(inputs)
        resid = self.body.embed.hook_out(tokens) + self.body.pos_embed.hook_out(times)
        for block in self.blocks:
            out = block(resid)
            resid = out[0] if isinstance(out, tuple) else out
        final = self.ln_final(resid[:, -1:])
        return self.unembed(final)[:, -1], self.value_head(final)[:, -1, 0]

    def action_logits(self, inputs: AgentInputs, last_only: bool = False) -> torch.Tensor:
        """Logits of the current step's action (at the last state token), [B, 7].

        ``last_only`` computes the final block for the last position alone (see ``run_from``):
        faster, and exact unless a hook edits the final block.
        """
        if not last_only:
            return self(inputs)[:, -1]
        tokens, times = self.embed(inputs)
        resid = self.body.embed.hook_out(tokens) + self.body.pos_embed.hook_out(times)
        return self.run_from(resid, 0, slice(-1, None), last_only=True)[:, -1]
