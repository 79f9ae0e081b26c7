"""The JSON Schema of the spec language, and the copy of it shipped beside this module for editors.

``runner schema`` prints it; ``runner/spec/schema.json`` holds the same text, so that a
spec can name it in its first line and an editor (yaml-language-server) completes and
checks keys and shows each field's description on hover::

    # yaml-language-server: $schema=../runner/spec/schema.json

>>> schema = json_schema()
>>> schema["title"], sorted(schema["$defs"]["Steer"]["properties"])[:3]
('runner spec', ['coefficient', 'head', 'hook'])
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from runner.spec.kinds import spec_kinds

SCHEMA_FILE = Path(__file__).with_name("schema.json")
REGENERATE = ".venv/bin/runner schema > runner/spec/schema.json"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec of either kind (intervene or train), every field described."""
    kinds = spec_kinds()
    schema = TypeAdapter(kinds["intervene"] | kinds["train"]).json_schema()
    schema.update({"title": "runner spec", "description": "A runner experiment spec: kind intervene (default) or train."})
    return schema


def schema_text() -> str:
    """``json_schema()`` as ``runner schema`` prints it and ``schema.json`` holds it."""
    return json.dumps(json_schema(), indent=2) + "\n"


def modeline(path: str | Path) -> str:
    """The first line of a spec that points yaml-language-server at ``path`` (relative: to the spec's folder)."""
    return f"# yaml-language-server: $schema={path}"
