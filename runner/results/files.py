"""Writing files that are never half there: a temporary name beside the target, then a rename.

Also the two encodings netCDF needs: JSON text for attrs, and sweep values as coordinates.
"""
from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

TEMP_SUFFIX = ".tmp"


def _umask_mode() -> int:
    """The mode an ordinary new file gets (mkstemp makes 0600 files; results are meant to be shared)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic(path: Path) -> Iterator[str]:
    """A temporary name beside ``path``: renamed onto it (with the umask's mode) if the block succeeds."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` through a temporary file and a rename."""
    with atomic(path) as tmp:
        Path(tmp).write_bytes(data)


def write_netcdf(ds: Any, path: Path) -> None:
    """``ds.to_netcdf`` through a temporary file and a rename, with string variables as text.

    netCDF reports a failed write as "HDF error" or even "Permission denied"; it is
    raised as the OSError the machine caused (disk full, file-size limit) so that
    callers can say so.
    """
    encoding = {name: {"dtype": str} for name, var in ds.variables.items() if var.dtype == object}
    with atomic(path) as tmp:
        try:
            ds.to_netcdf(tmp, engine="netcdf4", encoding=encoding)
        except (RuntimeError, OSError) as exc:
            raise _write_fault(path, exc) from None


def _write_fault(path: Path, exc: Exception) -> OSError:
    """The likely cause of a failed netCDF write, as an OSError."""
    if shutil.disk_usage(path.parent).free < 1 << 20:
        return OSError(errno.ENOSPC, "No space left on device", str(path))
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return OSError(errno.EFBIG, f"File too large (the file-size limit is {limit} bytes)", str(path))
    if isinstance(exc, OSError):
        return exc
    return OSError(errno.EIO, f"netCDF could not write the file ({exc})", str(path))


def temp_files(folder: Path) -> list[Path]:
    """Temporary files a killed writer left in ``folder`` and below."""
    return [p for p in folder.rglob(f".*{TEMP_SUFFIX}") if p.is_file()] if folder.is_dir() else []


def json_attr(value: Any) -> str:
    """netCDF attrs cannot hold dicts, None or bool: store them as JSON text."""
    return json.dumps(value, sort_keys=True, default=str)


def coord_values(values: list[Any]) -> np.ndarray:
    """Sweep values as a netCDF-friendly coordinate: the values themselves where netCDF can hold them.

    Numbers and booleans stay numbers and booleans; a mix of scalars becomes their text
    (``position: [all, last, 0]`` -> ``"all", "last", "0"``); lists and mappings become JSON text.
    """
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)

    def text(v: Any) -> str:
        if v is None or isinstance(v, (bool, int, float, str)):
            return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        return json.dumps(v, sort_keys=True)

    return np.array([text(v) for v in values], dtype=object)
