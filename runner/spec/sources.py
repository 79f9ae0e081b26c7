"""Model and data sources: what a spec runs and what the model reads."""
from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from runner.spec.base import SLUG, Source, Strict, one_of

Probability = Annotated[float, Field(ge=0, le=1)]

# ---------------------------------------------------------------- models

class TransformerConfig(Strict):
    """A token transformer built natively by TransformerLens (random init)."""

    n_layers: int = Field(ge=1, description="Number of transformer blocks.")
    d_model: int = Field(ge=1, description="Width of the residual stream.")
    n_heads: int = Field(ge=1, description="Attention heads per block; must divide d_model unless d_head is given.")
    d_head: int | None = Field(None, ge=1, description="Width of one head; default d_model // n_heads.")
    d_mlp: int | None = Field(None, ge=1, description="MLP hidden width; default 4 * d_model.")
    d_vocab: int = Field(ge=2, description="Vocabulary size.")
    n_ctx: int = Field(ge=1, description="Maximum sequence length.")
    act_fn: Literal["gelu", "gelu_new", "relu", "silu"] = Field("gelu", description="MLP activation.")
    normalization: Literal["LN", "LNPre", "RMS", "RMSPre"] = Field("LN", description="Normalisation type.")
    attn_only: bool = Field(False, description="Blocks without MLPs.")
    init_seed: int = Field(0, ge=0, description="Seed of the weight initialisation: same seed, same weights.")


class TransformerModel(Source):
    transformer: TransformerConfig = Field(description="A randomly initialised TransformerLens model.")


class CheckpointModel(Source):
    checkpoint: str = Field(description="A folder holding model.safetensors + config.json (an agent runner trained, "
                                        "e.g. results/<run>/models/<point>); relative to the directory runner "
                                        "starts in.")


class RunModel(Source):
    run: str = Field(pattern=SLUG, description="Every model of the train run results/<run>/; its grid becomes dims here.")


class PretrainedModel(Source):
    pretrained: str = Field(min_length=1, description=(
        "A Hugging Face causal LM, loaded through TransformerLens's TransformerBridge (boot_transformers) with its "
        "tokenizer: a folder save_pretrained wrote (config.json, *.safetensors, tokenizer files; relative to the "
        "directory runner starts in), or a hub name (openai-community/gpt2) that is not a folder, read from the "
        "Hugging Face cache or, where the hub can be reached, downloaded."))


ModelSource = one_of("model", TransformerModel, CheckpointModel, PretrainedModel, RunModel)


# ---------------------------------------------------------------- data

class Data(Source):
    """A data source: what the model reads."""

    agent_data: ClassVar[bool] = False   # agents read trajectories; token models read token ids

    @property
    def target_return(self) -> float | None:
        """The return a decision transformer is conditioned on, when the source sets one."""
        return None

    @property
    def where(self) -> dict[str, str]:
        """The conditions restricting which samples are read (selection kind -> value); empty: every sample."""
        return {}


class TokensData(Data):
    tokens: list[list[Annotated[int, Field(ge=0)]]] = Field(
        min_length=1, description="Token ids, one row per sample; all rows the same length."
    )

    @field_validator("tokens")
    @classmethod
    def _rectangular(cls, rows: list[list[int]]) -> list[list[int]]:
        if any(len(r) == 0 for r in rows):
            raise ValueError("every row needs at least one token")
        if len({len(r) for r in rows}) > 1:
            raise ValueError(f"all rows must have the same length, got lengths {sorted({len(r) for r in rows})}")
        return rows


class TextData(Data):
    text: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="Pretrained models: strings, one per sample, tokenized by the model's tokenizer "
                                  "with BOS first (as TransformerLens's to_tokens); every row must come to the same "
                                  "number of tokens (nothing is padded).")


class RandomTokensOptions(Strict):
    batch: int = Field(ge=1, description="Number of samples.")
    length: int = Field(ge=1, description="Tokens per sample.")
    seed: int | None = Field(None, ge=0, description="Seed of the draw; default: the spec's seed.")


class RandomTokensData(Data):
    random_tokens: RandomTokensOptions = Field(description="Uniformly random token ids in [0, d_vocab).")


class Where(Strict):
    """Which samples (steps) of the episodes the model reads; every condition given must hold."""

    mission: str | None = Field(None, description="Only episodes whose mission is exactly this.")
    mission_word: str | None = Field(None, description="Only episodes whose mission has this word, e.g. red.")
    in_view: str | None = Field(None, description="Only steps whose 7x7 view shows this object ('key' or 'red key').")

    @model_validator(mode="after")
    def _something(self) -> "Where":
        if not self.conditions():
            raise ValueError("where needs at least one of mission, mission_word, in_view")
        return self

    def conditions(self) -> dict[str, str]:
        """selection kind -> value, for the conditions given."""
        return self.model_dump(exclude_none=True)


class Demonstrator(Strict):
    """A trained agent playing the demonstrations (a PPO agent for a level with no bot, as DTI does)."""

    checkpoint: str | None = Field(None, description="A folder holding model.safetensors + config.json of an agent "
                                                     "trained on this env; relative to the directory runner starts in.")
    run: str | None = Field(None, pattern=SLUG, description="The train run results/<run>/ whose model plays (its one "
                                                            "model, or the one point names); before that run exists, "
                                                            "`runner validate` notes it and `runner run` refuses.")
    point: str | None = Field(None, min_length=1, description="run: which model of its grid, by folder name "
                                                              "(e.g. seed=0); default: the run's only model.")
    sampling: Literal["greedy", "sample"] = Field("sample", description="greedy: the most probable action; sample: "
                                                                        "an action drawn from the policy (seeded per "
                                                                        "episode), so returns spread.")
    temperature: float = Field(1.0, gt=0, le=100, description="sample: logits divided by this before drawing.")

    @model_validator(mode="after")
    def _one_source(self) -> "Demonstrator":
        if (self.checkpoint is None) == (self.run is None):
            raise ValueError("a policy agent needs exactly one of checkpoint or run")
        if self.point is not None and self.run is None:
            raise ValueError("point chooses a model of a run: give run, or name the folder with checkpoint")
        return self


class TrajectoryOptions(Strict):
    env: str = Field(description="A MiniGrid or BabyAI env id registered by minigrid, e.g. BabyAI-GoToLocal-v0.")
    policy: Literal["bot", "random"] | Demonstrator = Field(
        "bot", description="bot: minigrid's BabyAI bot (BabyAI levels only); random: uniformly random actions; "
                           "{checkpoint: PATH} or {run: NAME}: a trained agent (e.g. PPO) of this env, with "
                           "sampling: greedy | sample and temperature.")
    episodes: int = Field(ge=1, description="Number of episodes.")
    seed: int | None = Field(None, ge=0, description="Episode e uses env seed seed + e; default: the spec's seed.")
    max_steps: int | None = Field(None, ge=1, description="Truncate episodes here; default: the env's own limit.")
    epsilon: Probability | list[Probability] = Field(
        0.0, description="bot: each action is replaced by a random one with this probability; a list gives episode "
                         "e the noise epsilon[e % len] (graded noise, so that returns cover a range, as a "
                         "calibrated decision transformer needs).")
    labels: Literal["taken", "bot"] = Field(
        "taken", description="bc: the action each state is trained to predict: the one taken, or the one the bot "
                             "suggests there (with epsilon: states off the bot's path labelled with its way back, "
                             "DAgger-style recovery data).")
    target_return: float | None = Field(
        None, description="Decision transformers: condition RTG tokens on this return (less rewards already received) "
                          "instead of the episodes' own; closed-loop rollouts start from it too. Sweep it for an RTG scan.")
    where: Where | None = Field(None, description="Measure only these samples (steps), e.g. {mission_word: red}; each "
                                                  "still sees its episode's earlier steps in its window.")

    @field_validator("epsilon")
    @classmethod
    def _some_noise(cls, value: float | list[float]) -> float | list[float]:
        if isinstance(value, list) and not value:
            raise ValueError("epsilon: give a probability, or a non-empty list of them")
        return value

    @model_validator(mode="after")
    def _bot_labels(self) -> "TrajectoryOptions":
        if self.labels == "bot" and self.policy != "bot":
            raise ValueError("labels: bot needs policy: bot (the bot suggests the labels)")
        return self


class TrajectoryData(Data):
    trajectories: TrajectoryOptions = Field(description="Episodes generated by a policy (cached under results/.cache).")

    agent_data: ClassVar[bool] = True

    @property
    def target_return(self) -> float | None:
        return self.trajectories.target_return

    @property
    def where(self) -> dict[str, str]:
        return self.trajectories.where.conditions() if self.trajectories.where else {}


class FileData(Data):
    file: str = Field(description="An .npz of trajectories in runner's layout (see runner.envs.trajectories); "
                                  "relative to the directory runner starts in.")

    agent_data: ClassVar[bool] = True


class EnvOptions(Strict):
    id: str = Field(description="A MiniGrid or BabyAI env id registered by minigrid, e.g. MiniGrid-DoorKey-5x5-v0.")
    seed: int = Field(0, ge=0, description="Training episodes reset with env seeds seed, seed + 1, ... in the order "
                                           "they start (keep them apart from eval.seed).")
    max_steps: int | None = Field(None, ge=1, description="Truncate episodes here; default: the env's own limit.")


class EnvData(Data):
    env: EnvOptions = Field(description="algorithm ppo: the environment it learns in, online (no demonstrations).")

    agent_data: ClassVar[bool] = True


DataSource = one_of("data", TokensData, RandomTokensData, TextData, TrajectoryData, FileData)
AgentData = one_of("data", TrajectoryData, FileData, EnvData)

__all__ = ["TransformerConfig", "TransformerModel", "CheckpointModel", "PretrainedModel", "RunModel", "Data",
           "TokensData", "TextData", "RandomTokensOptions", "RandomTokensData", "Where", "TrajectoryOptions",
           "TrajectoryData", "FileData", "ModelSource", "DataSource", "AgentData", "Demonstrator", "EnvOptions", "EnvData"]
