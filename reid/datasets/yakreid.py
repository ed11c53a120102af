"""YakReID-103: catalogue rows from image lists, with the `simple` or `hard` test split.

YakReID-103 (IJCB 2021) is distributed by its authors on request and its list format is not
public, so this adapter reads a documented, market-style layout under the dataset root:

    train_list.txt              one training image per line
    simple/query_list.txt       query images of the simple test split
    simple/gallery_list.txt     gallery images of the simple test split
    hard/query_list.txt         ... and of the hard test split
    hard/gallery_list.txt

Each line is `path identity [camera]`, whitespace-separated, or comma-separated when the line
contains a comma (for paths with spaces). `path` is relative to the dataset root; blank lines
and lines starting with '#' are skipped. Every list is an option (relative to root or
absolute); `{test_split}` in the query and gallery options is replaced by the chosen split.
Evaluation is query-gallery: a gallery image of the query's identity and camera is junk, so
give the camera column whenever it is known.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reid.datasets import option_path
from reid.errors import UserError

TEST_SPLITS = ("simple", "hard")
FILE_OPTIONS = {
    "train_list": "YakReID-103 train list",
    "query_list": "YakReID-103 query list",
    "gallery_list": "YakReID-103 gallery list",
}


def load(
    root: Path,
    test_split: str = "hard",
    train_list: str = "train_list.txt",
    query_list: str = "{test_split}/query_list.txt",
    gallery_list: str = "{test_split}/gallery_list.txt",
) -> pd.DataFrame:
    """Catalogue rows: split 'train' from the train list, 'query'/'gallery' from the test split."""
    root = Path(root)
    if test_split not in TEST_SPLITS:
        raise UserError(
            f"yakreid option test_split={test_split!r} is unknown; use one of {', '.join(TEST_SPLITS)}"
        )
    lists = {
        "train": ("train_list", train_list),
        "query": ("query_list", query_list.format(test_split=test_split)),
        "gallery": ("gallery_list", gallery_list.format(test_split=test_split)),
    }
    rows = []
    for split, (option, value) in lists.items():
        path = option_path(root, value, option, FILE_OPTIONS[option])
        rows += [{**row, "split": split} for row in _list_rows(path, option)]
    return pd.DataFrame(rows)


def _list_rows(path: Path, option: str) -> list[dict[str, str]]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = [f.strip() for f in text.split(",")] if "," in text else text.split()
        if len(fields) not in (2, 3) or not all(fields):
            raise UserError(
                f"{path} line {line_no}: expected 'path identity [camera]', got {text!r}; "
                f"fix the line or point option {option} at the right list"
            )
        image = fields[0]
        rows.append(
            {
                "image_id": str(Path(image).with_suffix("").as_posix()),
                "path": image,
                "identity": fields[1],
                "camera": fields[2] if len(fields) == 3 else "",
            }
        )
    return rows
