"""Atomic file writes: a reader (or a resumed run) never sees a half-written result file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Binary handle on a temporary file beside ``path``, moved onto it on success and deleted
    on failure (same directory, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name created with the default permissions: mkstemp's private 0600 would make
    # results unreadable to the other users of a shared project directory.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("xb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
