"""Building blocks of the spec language: strict models, single-key sources, action names."""
from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
)

from runner.envs.actions import ACTIONS, ActionName  # noqa: F401  (re-exported: the spec names actions)

SLUG = r"^[a-z0-9][a-z0-9_-]*$"   # a whole string: pydantic's (Rust) $ never matches before a final newline


class Strict(BaseModel):
    """A spec model: unknown keys are errors, types are not coerced, numbers are finite, instances are immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class Source(Strict):
    """A mapping with exactly one key naming the kind of source: ``{file: v.npy}``, ``{random: {...}}``."""

    @property
    def kind(self) -> str:
        """The source's one key, e.g. ``file`` or ``contrast``: what runner dispatches on."""
        return next(iter(type(self).model_fields))

    @property
    def value(self) -> Any:
        """What the one key holds."""
        return getattr(self, self.kind)


def _single_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, Source):
        return value.kind
    return None


def one_of(what: str, *models: type[Source]) -> Any:
    """A union of single-key source models, told apart by their one key."""
    if len(models) == 1:
        return models[0]
    names = [next(iter(m.model_fields)) for m in models]
    members = tuple(Annotated[m, Tag(n)] for m, n in zip(models, names))
    return Annotated[
        Union[members],  # type: ignore[valid-type]
        Discriminator(
            _single_key,
            custom_error_type="one_source",
            custom_error_message=f"expected a mapping with exactly one {what} source: " + " | ".join(names),
        ),
    ]
