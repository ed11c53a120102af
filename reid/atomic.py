"""Atomic file writes: a reader (or a resumed run) never sees a half-written result file."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from reid.errors import UserError

_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file name beside ``path`` for a writer that wants a name; the file is moved
    onto ``path`` on success and deleted on failure (same directory: ``os.replace`` is atomic).
    A directory that cannot be made, a full disk or an exhausted quota becomes one clear error
    naming the file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot write {path} ({error}): choose a writable location") from None
    # A unique name created with the default permissions: mkstemp's private 0600 would make
    # results unreadable to the other users of a shared project directory.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
            raise UserError(
                f"no space left to write {path} ({os.strerror(error.errno)}): free space on that "
                "disk or raise the quota, then rerun; finished results are kept and training "
                "continues from its last checkpoint"
            ) from None
        raise


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Binary handle on a temporary file beside ``path``, flushed to disk and moved onto it on
    success, deleted on failure."""
    with atomic_path(path) as tmp, tmp.open("xb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
