"""Content ids: short hashes of canonical JSON that name runs, points, tasks and cached data."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
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


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, computed once per process while the file is unchanged (mtime and size)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
