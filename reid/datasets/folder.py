"""Folder-per-identity trees (`<identity>/<file>`), e.g. the Nyala data.

Each directory directly under the dataset root (or under option `subdir`) is one identity; the
images directly inside it are its images. Hidden files and directories, non-image files and
deeper subdirectories are ignored. A regex `pattern`, matched against the whole file name,
reads optional fields from the name through named groups (`encounter`, `orientation`, `camera`,
`frame`). The default reads Nyala names like `124_leftphoto.jpg`: encounter 124, left flank
(head on the left of the frame).

Split (option `split`):
    {all: test}                          every image is a 'test' row (all-vs-all evaluation)
    {train_fraction: 0.5, seed: 0}       whole identities go to 'train' or 'test'
The identity split ranks identities by a hash of (seed, identity) and sends the first
round(train_fraction * n) to train: deterministic on every platform and Python version, and
adding an identity moves at most one other between train and test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from reid.datasets import IMAGE_EXTENSIONS
from reid.errors import UserError

FOLDER_OPTIONS = {"subdir": "folder of identity folders"}
NYALA_PATTERN = r"^(?P<encounter>\d+)_(?P<orientation>left|right)photo\.[^.]+$"
NAME_FIELDS = ("encounter", "orientation", "camera", "frame")
_SHOWN_FILES = 3


def load(
    root: Path,
    pattern: str = NYALA_PATTERN,
    orientation_map: dict[str, str] | None = None,
    skip_unmatched: bool = False,
    split: dict[str, object] | None = None,
    subdir: str = "",
) -> pd.DataFrame:
    """Catalogue rows for every image of an `<identity>/<file>` tree."""
    root = Path(root)
    regex = _compile(pattern)
    mapping = dict(orientation_map or {})
    images_dir = root / subdir
    if not images_dir.is_dir():
        raise UserError(
            f"folder dataset: {images_dir} is not a directory; fix the dataset root or option subdir"
        )
    rows, unmatched = [], []
    for identity_dir in sorted(_visible(images_dir.iterdir())):
        if not identity_dir.is_dir():
            continue
        for image in sorted(_visible(identity_dir.iterdir())):
            if not image.is_file() or image.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            relative = image.relative_to(root).as_posix()
            match = regex.fullmatch(image.name)
            if match is None:
                unmatched.append(relative)
                continue
            fields = {k: v for k, v in match.groupdict().items() if v is not None}
            if "orientation" in fields:
                fields["orientation"] = _orientation(fields["orientation"], mapping, relative)
            rows.append(
                {
                    "image_id": str(Path(relative).with_suffix("").as_posix()),
                    "path": relative,
                    "identity": identity_dir.name,
                    **fields,
                }
            )
    if unmatched and not skip_unmatched:
        raise UserError(
            f"folder dataset: {len(unmatched)} file(s) do not match pattern {pattern!r} "
            f"(e.g. {', '.join(unmatched[:_SHOWN_FILES])}); fix option pattern, rename the "
            f"files, or set skip_unmatched: true to leave them out"
        )
    if not rows:
        raise UserError(
            f"folder dataset: no images ({', '.join(IMAGE_EXTENSIONS)}) found in "
            f"{images_dir}/<identity>/; check the dataset root and option subdir"
        )
    table = pd.DataFrame(rows)
    identities = sorted(set(table["identity"]))
    table["split"] = table["identity"].map(_split_of(identities, split or {"all": "test"}))
    return table


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise UserError(f"folder option pattern {pattern!r} is not a valid regex ({err})") from None
    unknown = sorted(set(regex.groupindex) - set(NAME_FIELDS))
    if unknown:
        raise UserError(
            f"folder option pattern has unknown named group(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(NAME_FIELDS)} (use (?:...) for other groups)"
        )
    return regex


def _orientation(value: str, mapping: dict[str, str], relative: str) -> str:
    orientation = mapping.get(value, value)
    if orientation not in ("left", "right", ""):
        raise UserError(
            f"folder dataset: {relative} has orientation {value!r}; map it to left/right "
            f"with option orientation_map, e.g. {{{value!r}: 'left'}}"
        )
    return orientation


def _visible(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if not p.name.startswith(".")]


def _split_of(identities: list[str], split: dict[str, object]) -> dict[str, str]:
    if split == {"all": "test"}:
        return dict.fromkeys(identities, "test")
    if set(split) != {"train_fraction", "seed"}:
        raise UserError(
            f"folder option split={split!r} is not understood; use {{all: test}} or "
            f"{{train_fraction: 0.5, seed: 0}}"
        )
    fraction, seed = split["train_fraction"], split["seed"]
    if not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise UserError(
            f"folder option split.train_fraction={fraction!r} must be a number between 0 and 1"
        )
    n_train = round(fraction * len(identities))
    if not 0 < n_train < len(identities):
        raise UserError(
            f"folder option split.train_fraction={fraction} gives {n_train} of "
            f"{len(identities)} identities to train; both train and test need at least one"
        )

    def rank(identity: str) -> str:
        return hashlib.sha256(f"{seed}\0{identity}".encode()).hexdigest()

    train = set(sorted(identities, key=rank)[:n_train])
    return {i: "train" if i in train else "test" for i in identities}
