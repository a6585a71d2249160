"""nostrade.atomic: the new file whole or the old one, never half; no temporary file left; readable by others."""
import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nostrade.atomic import WriteError, atomic_write, copy, write_bytes, write_json, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_write(path) as f:
            f.write(b"half a fi")
            raise OSError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_readers_see_the_old_file_until_the_new_one_is_whole(tmp_path):
    path = tmp_path / "out.txt"
    write_text(path, "old")
    with atomic_write(path, "w") as f:
        f.write("new, ")
        f.flush()
        assert path.read_text() == "old"
        f.write("whole")
    assert path.read_text() == "new, whole"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_mode_is_0644_less_the_umask(tmp_path, umask, mode):
    before = os.umask(umask)
    try:
        write_bytes(tmp_path / "a" / "b.bin", b"x")  # parent folders are made
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "a" / "b.bin").stat().st_mode) == mode


def test_json_numpy_scalars_sorted_keys_and_nan(tmp_path):
    path = tmp_path / "r.json"
    write_json(path, {"b": np.float32(0.5), "a": np.int64(3), "c": float("nan")})
    text = path.read_text()
    assert text.endswith("\n") and text.index('"a"') < text.index('"b"')
    assert json.loads(text)["a"] == 3 and json.loads(text)["b"] == 0.5 and np.isnan(json.loads(text)["c"])
    with pytest.raises(TypeError, match="object"):
        write_json(path, {"x": object()})
    assert json.loads(path.read_text())["a"] == 3  # the failed write left the previous file


def test_copy(tmp_path):
    (tmp_path / "src").write_bytes(b"\x00payload" * 1000)
    copy(tmp_path / "src", tmp_path / "dst")
    assert (tmp_path / "dst").read_bytes() == (tmp_path / "src").read_bytes()


def test_a_full_disk_inside_a_library_names_the_file(tmp_path):
    """torch.save reports ENOSPC as '[enforce fail at inline_container.cc:672] ...' with the OSError as context."""
    path = tmp_path / "model.pt"
    with pytest.raises(WriteError, match=rf"^cannot write {path}: No space left on device$"):
        with atomic_write(path) as f:
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_names_the_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(WriteError, match=rf"^cannot write {tmp_path / 'file' / 'x.json'}: "):
        write_json(tmp_path / "file" / "x.json", {})


def test_a_temporary_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "model.pt"
    code = ("import sys; from nostrade.atomic import write_bytes; write_bytes(sys.argv[1], b'new')")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "code"),
           "NOSTRADE_KILL_AT": "atomic:before-rename"}
    write_bytes(path, b"old")
    killed = subprocess.run([sys.executable, "-c", code, str(path)], env=env, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    leftover = [p.name for p in tmp_path.iterdir() if p.name != "model.pt"]
    assert len(leftover) == 1 and leftover[0].startswith(".model.pt.") and path.read_bytes() == b"old"
    (tmp_path / ".model.pt.0c0ffee0.tmp").write_bytes(b"older code's leftover: no pid")
    alive = tmp_path / f".model.pt.{os.getpid()}-abcd.tmp"  # a live writer's: kept
    alive.write_bytes(b"in progress")
    write_bytes(path, b"newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.pt", alive.name])
    assert path.read_bytes() == b"newer"
