"""A user's own catalogue CSV, taken as is after checking it against the schema.

For data no adapter knows: write the catalogue yourself (columns in reid.catalogue, paths
relative to the dataset root) and point option `path` at it, relative to the dataset root or
absolute. Columns outside the schema are rejected with the list of allowed ones, so a misspelt
column is caught instead of silently dropped. Rows keep the file's order, so the row numbers
in validation messages are the rows of the user's file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reid.catalogue import read_catalogue
from reid.datasets import option_path

FILE_OPTIONS = {"path": "catalogue CSV"}


def load(root: Path, path: str) -> pd.DataFrame:
    """Catalogue rows read from the CSV at `path`."""
    return read_catalogue(option_path(Path(root), path, "path", FILE_OPTIONS["path"]))
