"""Atomic file writes: a reader (or a resumed run) never sees a half-written result file."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Binary file handle on a temporary file beside ``path``, moved onto it on success and
    deleted on failure (same directory, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name created with the default permissions (umask): mkstemp's private 0600 would
    # hide the cached maps from the other users of a shared project directory.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_open(path) as handle:
        handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
