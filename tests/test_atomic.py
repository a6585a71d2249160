"""nostrade.atomic: the new file whole or the old one, never half; no temporary file left; readable by others."""
import json
import os
import stat

import numpy as np
import pytest

from nostrade.atomic import atomic_write, copy, write_bytes, write_json, write_text


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
