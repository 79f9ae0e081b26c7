"""Turn pydantic's validation errors into located, readable problems."""
from __future__ import annotations

import difflib
import types
import typing
from typing import Any, Iterable

from pydantic import BaseModel, Tag, ValidationError

from runner.errors import Problem
from runner.spec.yaml_loader import Located, Path, dotted


def problems_from(exc: ValidationError, located: Located, model: type[BaseModel], *,
                  prefix: str = "") -> list[Problem]:
    """One problem per pydantic error, placed at the YAML key or value it concerns."""
    out = []
    for err in exc.errors():
        path, message, at_key = _explain(err, located.data, model)
        problem = located.problem(path, prefix + message, key=at_key)
        if problem not in out:
            out.append(problem)
    return out


def data_path(data: Any, loc: Iterable[Any]) -> Path:
    """The path into ``data`` that a pydantic ``loc`` denotes (union tags dropped)."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            continue
        path.append(part)
    return tuple(path)


def _explain(err: dict, data: Any, model: type[BaseModel]) -> tuple[Path, str, bool]:
    loc, kind = tuple(err["loc"]), err["type"]
    if kind == "missing":
        parent = data_path(data, loc[:-1])
        return parent + (loc[-1],), f"missing required key {loc[-1]!r}", False
    path = data_path(data, loc)
    if kind == "extra_forbidden":
        key = loc[-1]
        msg = f"unknown key {key!r}" + _did_you_mean(key, allowed_keys(model, loc[:-1]))
        return path, msg, True
    msg = err["msg"]
    msg = msg.replace("Input should be", "expected").replace("Value error, ", "")
    if kind in ("literal_error", "union_tag_invalid"):
        expected = err.get("ctx", {}).get("expected") or err.get("ctx", {}).get("expected_tags", "")
        choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip(" '")]
        if kind == "union_tag_invalid":
            got = err["ctx"]["tag"]
            field = err["ctx"].get("discriminator", "").strip("'")
            if isinstance(_node(data, path), dict) and field in _node(data, path):
                path += (field,)  # point at the misspelt tag itself
            what = "metric" if loc[:1] == ("metrics",) else "kind"
            msg = f"unknown {what} {got!r}; expected one of {expected}"
        else:
            got = err.get("input")
            msg = f"{msg}, got {got!r}"
        msg += _did_you_mean(got, choices)
    elif kind == "one_source" and isinstance(err.get("input"), dict):
        choices = msg.rsplit(": ", 1)[-1].split(" | ")
        unknown = [k for k in err["input"] if k not in choices]
        if unknown:
            msg += f"; unknown key {unknown[0]!r}" + _did_you_mean(unknown[0], choices)
        elif len(err["input"]) > 1:
            msg += f"; got {len(err['input'])}: " + ", ".join(map(str, err["input"]))
    elif kind not in ("one_source",) and not isinstance(err.get("input"), (dict, list)):
        msg += f", got {err.get('input')!r}"
    return path, msg, False


def _node(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


def _did_you_mean(word: Any, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---------------------------------------------------------------- schema walking

def _leaves(tp: Any, tag: str | None = None) -> list[tuple[Any, str | None]]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = typing.get_args(tp)
        tag = next((m.tag for m in meta if isinstance(m, Tag)), tag)
        return _leaves(base, tag)
    if origin in (typing.Union, types.UnionType):
        return [leaf for arg in typing.get_args(tp) for leaf in _leaves(arg, tag)]
    return [(tp, tag)]


def _kind_tags(tp: Any) -> tuple[Any, ...]:
    if isinstance(tp, type) and issubclass(tp, BaseModel) and "kind" in tp.model_fields:
        return typing.get_args(tp.model_fields["kind"].annotation)
    return ()


def allowed_keys(model: type[BaseModel], loc: Iterable[Any]) -> list[str]:
    """The field names of the model found at ``loc`` (a pydantic loc) below ``model``."""
    current: list[Any] = [model]
    for part in loc:
        leaves = [leaf for t in current for leaf in _leaves(t)]
        tagged = [t for t, tag in leaves if tag == part or part in _kind_tags(t)]
        if tagged:
            current = tagged
            continue
        nxt = []
        for t, _ in leaves:
            if isinstance(part, int) and typing.get_origin(t) is list:
                nxt.append(typing.get_args(t)[0])
            elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
                nxt.append(t.model_fields[part].annotation)
        current = nxt
    keys: list[str] = []
    for t, _ in (leaf for c in current for leaf in _leaves(c)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            keys += [k for k in t.model_fields if k not in keys]
    return keys


def model_has_path(model: type[BaseModel], path: Path) -> bool:
    """Whether a dotted spec path names a field of the schema (defaults included)."""
    current: list[Any] = [model]
    for part in path:
        nxt = []
        for t, _ in (leaf for c in current for leaf in _leaves(c)):
            if isinstance(part, int) and typing.get_origin(t) is list:
                nxt.append(typing.get_args(t)[0])
            elif isinstance(t, type) and issubclass(t, BaseModel) and part in t.model_fields:
                nxt.append(t.model_fields[part].annotation)
        if not nxt:
            return False
        current = nxt
    return True


__all__ = ["problems_from", "allowed_keys", "model_has_path", "data_path", "dotted"]
