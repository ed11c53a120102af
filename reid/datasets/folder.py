"""Folder-per-identity trees (`<identity>/<file>`), e.g. the Nyala data.

Each directory directly under the dataset root (or under option `subdir`) is one identity; the
images directly inside it are its images. Hidden files and directories, non-image files and
deeper subdirectories are ignored. A regex `pattern`, matched against the whole file name,
reads optional fields from the name through named groups (`encounter`, `orientation`, `camera`,
`frame`). The default reads Nyala names like `124_leftphoto.jpg`: encounter 124, left flank
(head on the left of the frame).

Split (option `split`; `seed` defaults to 0):
    {all: test}                          every image is a 'test' row (all-vs-all evaluation)
    {train_fraction: 0.5, seed: 0}       whole identities go to 'train' or 'test': new animals
                                         at test time
    {encounter_fraction: 0.5, seed: 0}   each identity's encounters go to 'train' or 'test':
                                         new sightings of known animals at test time
The identity split ranks identities by a hash of (seed, identity) and sends the first
round(train_fraction * n) to train: deterministic on every platform and Python version, and
adding an identity moves at most one other between train and test. The encounter split ranks
each identity's encounters the same way by (seed, identity, encounter) and sends the first
round(encounter_fraction * n) of them to train, at least one and never all: an identity seen in
one encounter only stays in train (its photos could only match each other, which all-vs-all
counts as junk).
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
    table["split"] = _splits(table, split or {"all": "test"}, pattern)
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


SPLIT_KINDS = ("train_fraction", "encounter_fraction")
_SPLIT_EXAMPLES = (
    "{all: test}, {train_fraction: 0.5, seed: 0} or {encounter_fraction: 0.5, seed: 0}"
)


def _splits(table: pd.DataFrame, split: dict[str, object], pattern: str) -> pd.Series:
    """Each row's split under option `split`."""
    if split == {"all": "test"}:
        return pd.Series("test", index=table.index)
    kinds = [k for k in SPLIT_KINDS if k in split]
    if len(kinds) != 1 or set(split) - {kinds[0], "seed"}:
        raise UserError(f"folder option split={split!r} is not understood; use {_SPLIT_EXAMPLES}")
    kind, seed = kinds[0], split.get("seed", 0)
    fraction = split[kind]
    if not isinstance(fraction, int | float) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise UserError(f"folder option split.{kind}={fraction!r} must be a number between 0 and 1")
    if kind == "train_fraction":
        identities = sorted(set(table["identity"]))
        return table["identity"].map(_identity_split(identities, fraction, seed))
    if "encounter" not in table.columns or (table["encounter"].fillna("") == "").any():
        raise UserError(
            f"folder option split.encounter_fraction needs every image's encounter, read from "
            f"its file name by a named group (?P<encounter>...) in option pattern ({pattern!r}); "
            f"name the files so, or split by identity with {{train_fraction: 0.5, seed: 0}}"
        )
    return _encounter_split(table, fraction, seed)


def _rank(seed: object, *keys: str) -> str:
    return hashlib.sha256("\0".join([str(seed), *keys]).encode()).hexdigest()


def _identity_split(identities: list[str], fraction: float, seed: object) -> dict[str, str]:
    n_train = round(fraction * len(identities))
    if not 0 < n_train < len(identities):
        raise UserError(
            f"folder option split.train_fraction={fraction} gives {n_train} of "
            f"{len(identities)} identities to train; both train and test need at least one"
        )
    train = set(sorted(identities, key=lambda identity: _rank(seed, identity))[:n_train])
    return {i: "train" if i in train else "test" for i in identities}


def _encounter_split(table: pd.DataFrame, fraction: float, seed: object) -> pd.Series:
    train: set[tuple[str, str]] = set()
    for identity, encounters in table.groupby("identity")["encounter"]:
        ordered = sorted(set(encounters), key=lambda e: _rank(seed, identity, e))
        n_train = min(max(1, round(fraction * len(ordered))), max(1, len(ordered) - 1))
        train.update((identity, e) for e in ordered[:n_train])
    keys = zip(table["identity"], table["encounter"], strict=True)
    where = pd.Series(["train" if key in train else "test" for key in keys], index=table.index)
    if not (where == "test").any():
        raise UserError(
            "folder option split.encounter_fraction leaves no test images: every identity was "
            "seen in one encounter only; split by identity with {train_fraction: 0.5, seed: 0}"
        )
    return where
