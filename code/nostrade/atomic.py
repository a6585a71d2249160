"""Atomic file writes: a reader sees the old file or the new one, never half of one.

    with atomic_write(path) as f:          # a binary file (or atomic_write(path, "w", newline="") for text)
        torch.save(obj, f)
    write_json(path, obj); write_text(path, text); write_bytes(path, data); copy(src, dst)

The data goes to a temporary file beside ``path`` (same filesystem, so os.replace is atomic), is flushed and
fsynced, then replaces ``path``; on any error the temporary file is removed and ``path`` is untouched.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs):
    """Yield a file open on a temporary sibling of ``path``; on a clean exit it becomes ``path``.

    The file gets mode 0644 less the umask (mkstemp's 0600 would hide it from a service running as another
    user). Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def _json_scalar(value):
    """numpy scalars (np.float32, np.int64...) as the Python numbers they hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_json(path: str | Path, obj) -> None:
    """Indented, sorted keys, numpy scalars as numbers (NaN and inf as JSON's usual NaN / Infinity)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_scalar) + "\n")


def copy(src: str | Path, dst: str | Path) -> None:
    with open(src, "rb") as source, atomic_write(dst) as f:
        shutil.copyfileobj(source, f)
