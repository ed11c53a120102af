"""Atomic writes of both packages: results appear whole or not at all, readable by the group and
others as the umask allows (a shared project directory), and a failed write leaves nothing."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
import torch

from pseudomasks.atomic import atomic_open as teacher_atomic_open
from pseudomasks.errors import UserError as TeacherUserError
from reid.atomic import atomic_open as student_atomic_open
from reid.engine.checkpoint import load_tensors, save_tensors
from reid.errors import UserError as StudentUserError


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


@pytest.mark.parametrize(
    ("atomic_open", "user_error"),
    [(teacher_atomic_open, TeacherUserError), (student_atomic_open, StudentUserError)],
)
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_one_clear_error_naming_the_file(atomic_open, user_error, code, tmp_path):
    """Out of space mid-write (a filled scratch disk, a cluster quota): the old file stays, no
    partial temporary is left to fill the disk further, and the message names the file."""
    path = tmp_path / "last.safetensors"
    path.write_bytes(b"previous epoch")
    with (
        pytest.raises(user_error, match="no space left to write") as error,
        atomic_open(path) as handle,
    ):
        handle.write(b"half")
        raise OSError(code, os.strerror(code))
    assert str(path) in str(error.value) and os.strerror(code) in str(error.value)
    assert path.read_bytes() == b"previous epoch"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.safetensors"]


def test_a_checkpoint_that_does_not_fit_keeps_the_previous_one(tmp_path, monkeypatch):
    """The checkpoint writer (safetensors wants a file name) goes through the same path."""
    path = tmp_path / "last.safetensors"
    save_tensors(path, {"w": torch.zeros(2)}, {"epoch": 1})

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("reid.engine.checkpoint.save_file", full_disk)
    with pytest.raises(StudentUserError, match=f"no space left to write {path}"):
        save_tensors(path, {"w": torch.ones(2)}, {"epoch": 2})
    tensors, state = load_tensors(path)
    assert state == {"epoch": 1} and tensors["w"].tolist() == [0.0, 0.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]


def test_an_output_directory_that_cannot_be_made_is_a_user_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(StudentUserError, match="cannot write .*choose a writable location"):
        with student_atomic_open(blocker / "sub" / "x.json") as handle:
            handle.write(b"{}")
