"""YAML -> plain Python data, remembering where every key and value was written.

Only YAML's plain data types are constructed: tags that build objects
(``!!python/object`` and friends, or any custom tag) are refused, and so are
duplicate keys, which PyYAML would otherwise silently overwrite. Input is
bounded: a spec file holds at most ``MAX_BYTES``, nests at most ``MAX_DEPTH``
deep and expands (aliases included) to at most ``MAX_NODES`` values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from runner.errors import Problem, RunnerError

Path = tuple  # a path into the data: keys and list indices

MAX_BYTES = 4 * 2**20       # a spec is text a person writes; token lists included, 4 MiB is ample
MAX_DEPTH = 40              # mappings and lists inside each other
MAX_NODES = 1_000_000       # values built, aliases expanded (a "billion laughs" file stops here)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: the same nodes and marks, 10x faster

_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:map",
}
_AS_STRING_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}


@dataclass
class Located:
    """Data loaded from a YAML file with the line/column of each key and value."""

    data: Any
    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """Return (line, col) of the nearest written ancestor of ``path``."""
        path = tuple(path)
        while True:
            table = self.keys if key and path in self.keys else self.values
            if path in table:
                return table[path]
            if not path:
                return None, None
            path = path[:-1]

    def problem(self, path: Path, message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(message, self.file, line, col, dotted(path))


def dotted(path: Path) -> str:
    """``('sweep', 'zip', 0)`` -> ``'sweep.zip[0]'``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def load_yaml(text: str, file: str = "<string>") -> Located:
    """Parse ``text`` as YAML into plain data with positions; raise RunnerError on bad input."""
    if len(text) > MAX_BYTES:
        raise RunnerError(Problem(f"the spec is {len(text):,} characters long; a spec holds at most {MAX_BYTES:,} "
                                  "(put large data in a file: data: {file: ...})", file))
    loader = None
    try:
        loader = _Loader(text)  # checks every character: control characters are refused here
        node = loader.get_single_node()
    except RecursionError:
        raise RunnerError(Problem(f"the spec nests mappings or lists more than {MAX_DEPTH} deep", file)) from None
    except yaml.MarkedYAMLError as exc:
        if "maximum nesting depth" in str(exc):  # libyaml's own limit, far beyond ours
            raise RunnerError(Problem(f"the spec nests mappings or lists more than {MAX_DEPTH} deep", file)) from None
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        msg = " ".join(s for s in (exc.context, exc.problem) if s) or str(exc)
        raise RunnerError(Problem(f"YAML syntax error: {msg}", file, line, col)) from None
    except yaml.reader.ReaderError as exc:  # a NUL byte or another control character
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise RunnerError(Problem(f"character U+{code:04X} is not allowed in a spec (control characters and "
                                  "NUL bytes are refused)", file, line, col)) from None
    except yaml.YAMLError as exc:
        raise RunnerError(Problem(f"YAML syntax error: {' '.join(str(exc).split())}", file)) from None
    finally:
        if loader is not None:
            loader.dispose()
    located = Located(None, file)
    if node is None:
        raise RunnerError(Problem("the spec is empty: expected a mapping with name, model, data, ...", file, 1, 1))
    located.data = _build(node, (), loader, located, frozenset())
    return located


def _build(node: yaml.Node, path: Path, loader: Any, out: Located, inside: frozenset) -> Any:
    if len(path) > MAX_DEPTH:
        raise RunnerError(out.problem(path[:MAX_DEPTH], f"the spec nests mappings or lists more than {MAX_DEPTH} deep"))
    if len(out.values) >= MAX_NODES:
        raise RunnerError(out.problem(path, f"the spec expands to more than {MAX_NODES:,} values "
                                            "(aliases are expanded where they are used)"))
    out.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if id(node) in inside:
        raise RunnerError(out.problem(path, "this alias refers to a mapping or list that contains it"))
    inside = inside | {id(node)}
    if node.tag not in _PLAIN_TAGS and node.tag not in _AS_STRING_TAGS:
        raise RunnerError(out.problem(path, f"YAML tag {node.tag!r} is not allowed: a spec holds plain data only"))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise RunnerError(Problem("only plain keys are allowed (no merge keys or complex keys)", out.file, line, col, dotted(path)))
            key = _build(key_node, path + ("<key>",), loader, out, inside)
            out.values.pop(path + ("<key>",), None)
            if not isinstance(key, str):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise RunnerError(Problem(f"keys must be strings, got {key!r}", out.file, line, col, dotted(path)))
            if key in result:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                raise RunnerError(Problem(f"duplicate key {key!r}", out.file, line, col, dotted(path + (key,))))
            out.keys[path + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _build(value_node, path + (key,), loader, out, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), loader, out, inside) for i, item in enumerate(node.value)]
    if node.tag in _AS_STRING_TAGS:
        return node.value
    return loader.construct_object(node, deep=True)
