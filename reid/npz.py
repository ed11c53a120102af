"""Reading the project's own .npz files (features, part-map shards, the gallery cache).

For a file that is not an .npz of plain arrays, numpy's errors suggest loading it with pickle
"if you trust the file": not advice this tool passes on (it never unpickles). Every failure to
read becomes one UserError naming the file, what it should be and how to get a good one.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from reid.errors import UserError


@contextmanager
def read_npz(path: Path, what: str, fix: str) -> Iterator[np.lib.npyio.NpzFile]:
    """`np.load(path)` without pickles; `what` names the file's kind, `fix` how to remake it.
    Errors in the with-block (a missing array, an object array) are reported the same way."""
    try:
        with np.load(path, allow_pickle=False) as data:
            yield data
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; {fix}") from None
    except KeyError as error:
        raise UserError(
            f"{path} is not {what}: it lacks an array ({error.args[0]}); {fix}"
        ) from None
    except (ValueError, EOFError, OSError, zipfile.BadZipFile):
        raise UserError(f"{path} is not {what} (an .npz of plain arrays); {fix}") from None
