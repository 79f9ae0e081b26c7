"""Path rules of the spec language: relative paths resolve against the directory runner starts in."""
from __future__ import annotations

from pathlib import Path


def resolve_path(path: str | Path, base_dir: str | Path) -> Path:
    """A spec path resolved against ``base_dir`` (the project root, where ``specs/`` and ``results/`` live).

    >>> resolve_path("vectors/red.npy", "/project"), resolve_path("/data/d.npz", "/project")
    (PosixPath('/project/vectors/red.npy'), PosixPath('/data/d.npz'))
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p
