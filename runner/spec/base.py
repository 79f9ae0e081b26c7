"""Building blocks of the spec language: strict models, single-key sources, action names."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
)

SLUG = r"^[a-z0-9][a-z0-9_-]*$"
ACTIONS = ("left", "right", "forward", "pickup", "drop", "toggle", "done")  # MiniGrid's order: index = id
ActionName = Literal["left", "right", "forward", "pickup", "drop", "toggle", "done"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _single_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value))
    if isinstance(value, BaseModel):
        return next(iter(type(value).model_fields))
    return None


def one_of(what: str, *models: type[BaseModel]) -> Any:
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
