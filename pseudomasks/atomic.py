"""Atomic file writes: a reader (or a resumed run) never sees a half-written result file."""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pseudomasks.errors import UserError

_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextmanager
def atomic_open(path: Path) -> Iterator[IO[bytes]]:
    """Binary file handle on a temporary file beside ``path``, flushed to disk and moved onto it
    on success, deleted on failure (same directory, so ``os.replace`` is atomic). A full disk or
    exhausted quota becomes one clear error naming the file."""
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
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
            raise UserError(
                f"no space left to write {path} ({os.strerror(error.errno)}): free space on that "
                "disk or raise the quota, then rerun; the part maps already written are kept"
            ) from None
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_open(path) as handle:
        handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
