"""The ``figure:`` a spec names (variable, x, hue, col), read from spec text without validating the spec."""
from __future__ import annotations

import contextlib
from pathlib import Path

ROLES = ("x", "hue", "col")


def run_figure(run: str | Path, result: Path) -> dict[str, str] | None:
    """The ``figure:`` of the spec a command line names: the spec file given, else the spec.yaml beside
    ``result`` (rewritten by every run, so a figure added since the run counts); None: read the result's."""
    for spec in (Path(run), result.parent / "spec.yaml"):
        if spec.suffix in (".yaml", ".yml") and spec.is_file():
            with contextlib.suppress(OSError, UnicodeDecodeError):
                return figure_of(spec.read_text())
    return None


def figure_of(text: str) -> dict[str, str]:
    """The ``figure:`` mapping of spec text, its string fields only (empty if none or unreadable)."""
    import yaml

    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        data = None
    found = data.get("figure") if isinstance(data, dict) else None
    found = found if isinstance(found, dict) else {}
    return {k: v for k, v in found.items() if k in ("var", *ROLES) and isinstance(v, str)}
