"""Atomic writes of both packages: results appear whole or not at all, readable by the group and
others as the umask allows (a shared project directory), and a failed write leaves nothing."""

from __future__ import annotations

import os
import stat

import pytest

from pseudomasks.atomic import atomic_open as teacher_atomic_open
from reid.atomic import atomic_open as student_atomic_open


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("atomic_open", [teacher_atomic_open, student_atomic_open])
def test_files_get_the_default_permissions(atomic_open, tmp_path, umask_022):
    path = tmp_path / "sub" / "maps.npz"
    with atomic_open(path) as handle:
        handle.write(b"data")
    assert path.read_bytes() == b"data"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # 0o666 & ~0o022, not mkstemp's 0o600


@pytest.mark.parametrize("atomic_open", [teacher_atomic_open, student_atomic_open])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(atomic_open, tmp_path):
    path = tmp_path / "qc.json"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write(b"half")
        raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qc.json"]
