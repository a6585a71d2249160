"""Atomic file writes: a reader sees the old file or the new one, never half of one.

    with atomic_write(path) as f:          # a binary file (or atomic_write(path, "w", newline="") for text)
        torch.save(obj, f)
    write_json(path, obj); write_text(path, text); write_bytes(path, data); copy(src, dst)

The data goes to a temporary file beside ``path`` (same filesystem, so os.replace is atomic), is flushed and
fsynced, then replaces ``path``; on any error the temporary file is removed and ``path`` is untouched. A
temporary file that a killed process left behind (``.NAME.PID-XXXX.tmp`` whose process is gone) is removed
by the next write of the same path. A failure of the file system (full disk, read-only folder) raises
WriteError naming the file.

``fault_point(name)`` marks a step where the kill tests stop a process (``NOSTRADE_KILL_AT=name``: SIGKILL
there); it does nothing otherwise.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
from pathlib import Path

import numpy as np

KILL_AT_ENV = "NOSTRADE_KILL_AT"


class WriteError(OSError):
    """An output could not be written (full disk, read-only folder...); the message names the file."""


def fault_point(name: str) -> None:
    """SIGKILL this process here when the environment variable NOSTRADE_KILL_AT is ``name`` (kill tests)."""
    if os.environ.get(KILL_AT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary siblings of ``path`` whose writer process is gone (left by a kill)."""
    for leftover in glob.glob(os.path.join(glob.escape(str(path.parent)), f".{glob.escape(path.name)}.*.tmp")):
        pid = Path(leftover).name[len(path.name) + 2:-4].split("-")[0]
        if not (pid.isdigit() and pid_alive(int(pid))):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def io_error(error: BaseException) -> OSError | None:
    """The OSError behind a failed write: the error itself, or the one a library wrapped (torch.save turns a
    full disk into a RuntimeError whose context is the OSError)."""
    while error is not None and not isinstance(error, OSError):
        error = error.__cause__ or error.__context__
    return error


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_kwargs):
    """Yield a file open on a temporary sibling of ``path``; on a clean exit it becomes ``path``.

    The file gets mode 0644 less the umask (mkstemp's 0600 would hide it from a service running as another
    user). Parent folders are created."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as err:
        raise WriteError(f"cannot write {path}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        fault_point("atomic:before-rename")
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = io_error(err)
        if cause is not None and not isinstance(err, WriteError):
            raise WriteError(f"cannot write {path}: {cause.strerror or cause}") from err
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
