"""Content ids: short hashes of canonical JSON that name runs, points, tasks and cached data."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of plain data: sorted keys, no spaces.

    >>> canonical_json({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_id(obj: Any, length: int = 12) -> str:
    """A short sha256 of the canonical JSON of ``obj``: equal data, equal id.

    >>> content_id({"a": 1}) == content_id({"a": 1}), len(content_id([1, 2], 8))
    (True, 8)
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]
