"""The image catalogue: the one table every dataset adapter writes and everything downstream reads.

A catalogue has one row per image and only string columns (see DESIGN.md, "Data contracts").
Keeping the schema closed and every value a string means a catalogue round-trips through CSV
unchanged, so a rerun of an adapter produces a byte-identical file and Snakemake does not
rebuild what depends on it.

Row numbers in messages are those a user sees when opening the CSV in a spreadsheet or an
editor: the header is row 1, so the first image is row 2.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import pandas as pd
from PIL import Image

from reid.atomic import atomic_write_text
from reid.errors import UserError

log = logging.getLogger(__name__)

REQUIRED: tuple[str, ...] = ("image_id", "path", "identity", "split")
OPTIONAL: tuple[str, ...] = (
    "orientation",
    "camera",
    "frame",
    "encounter",
    "group",
    "keypoints",
    # A binary mask file relative to the root, or the mask inline as a COCO segmentation in JSON
    # (polygons [x1, y1, ...] or RLE {"size": [h, w], "counts": ...}, as wildlife-datasets keeps
    # them). The teacher's `annotations` segmentation member reads it.
    "silhouette",
    # The animal's box, JSON [x, y, w, h] in image pixels (wildlife-datasets' convention): the
    # teacher's `annotations` detector crops by it.
    "bbox",
)
COLUMNS: tuple[str, ...] = REQUIRED + OPTIONAL
SPLITS: tuple[str, ...] = ("train", "query", "gallery", "test")
ORIENTATIONS: tuple[str, ...] = ("left", "right", "")

ImageCheck = Literal["none", "header", "decode"]

# How many offending rows each kind of problem quotes: enough to see the pattern, short enough
# to stay one readable line for a 100k-row catalogue.
_SHOWN_ROWS = 3
# Image checks are I/O bound (open a file, read its header), so threads overlap the waits even
# on a two-core machine or a network file system.
_IMAGE_CHECK_THREADS = 8


def conform_catalogue(df: pd.DataFrame, source: str = "catalogue") -> pd.DataFrame:
    """Return `df` with exactly the schema's columns, in canonical order, all as strings.

    Missing optional columns are added as ''. Missing required columns and columns outside the
    schema are user errors: a misspelt column (``idenity``) silently dropped would lose data.
    """
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UserError(
            f"{source}: missing required column(s) {', '.join(missing)}; "
            f"a catalogue needs {', '.join(REQUIRED)}"
        )
    unknown = [str(c) for c in df.columns if c not in COLUMNS]
    if unknown:
        raise UserError(
            f"{source}: unknown column(s) {', '.join(unknown)}; "
            f"rename or remove them (allowed: {', '.join(COLUMNS)})"
        )
    out = pd.DataFrame(index=df.index)
    for column in COLUMNS:
        if column in df.columns:
            out[column] = [_as_text(v) for v in df[column]]
        else:
            out[column] = ""
    return out.reset_index(drop=True)


def _as_text(value: object) -> str:
    """A cell as the catalogue's string: missing values become '' (never the text 'nan')."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if value is pd.NA:
        return ""
    return str(value)


def sort_catalogue(df: pd.DataFrame) -> pd.DataFrame:
    """Sort rows by split (in SPLITS order), identity, image_id, so output order is reproducible."""
    split_rank = {s: i for i, s in enumerate(SPLITS)}
    key = pd.DataFrame(
        {
            "split": [split_rank.get(s, len(SPLITS)) for s in df["split"]],
            "split_text": list(df["split"]),
            "identity": list(df["identity"]),
            "image_id": list(df["image_id"]),
        }
    )
    order = key.sort_values(list(key.columns), kind="mergesort").index
    return df.iloc[order].reset_index(drop=True)


def read_catalogue(path: Path | str) -> pd.DataFrame:
    """Read a catalogue CSV as strings, adding missing optional columns as ''."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"catalogue {path} not found; build it first (reid's dataset step) or fix the path"
        )
    try:
        # index_col=False and the warning as an error: otherwise a row with one field too many
        # silently shifts every column of the file by one (pandas makes the first an index).
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False)
    except pd.errors.EmptyDataError as err:
        raise UserError(
            f"catalogue {path} is empty; it needs a header row with {', '.join(REQUIRED)}"
        ) from err
    except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
        raise UserError(
            f"catalogue {path} is not valid CSV ({str(err).strip()}); fix the file"
        ) from err
    return conform_catalogue(df, source=f"catalogue {path}")


def write_catalogue(df: pd.DataFrame, path: Path | str) -> None:
    """Write `df` atomically in canonical column and row order, so reruns are byte-identical."""
    path = Path(path)
    table = sort_catalogue(conform_catalogue(df))
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    atomic_write_text(path, buffer.getvalue())


def validate_catalogue(
    df: pd.DataFrame, root: Path | str, check_images: ImageCheck | bool = "header"
) -> list[str]:
    """Check a catalogue against its dataset root; raise one UserError listing every problem.

    Problems (errors): empty required values, duplicate image_id, unknown split, query rows
    without gallery rows (or the reverse), bad orientation, malformed keypoints or bbox,
    absolute or missing image/silhouette paths, and unreadable images. `check_images` picks how
    images are checked: "none" (existence only), "header" (PIL open + verify: cheap, catches
    non-images and corrupt headers) or "decode" (decode every pixel: catches truncated files,
    slow on 100k images). True means "header", False means "none".

    Returns warnings (also logged): identities with a single training image, which can never
    form a positive pair for the triplet loss.
    """
    mode = _image_check_mode(check_images)
    root = Path(root)
    table = conform_catalogue(df)
    problems: list[str] = []

    def report(kind: str, rows: Iterable[int], fix: str, detail: Callable[[int], str]) -> None:
        rows = list(rows)
        if not rows:
            return
        shown = ", ".join(
            f"row {r + 2} (image_id={table.at[r, 'image_id']}{detail(r)})"
            for r in rows[:_SHOWN_ROWS]
        )
        more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
        problems.append(f"{kind} in {len(rows)} row(s): {shown}{more}; {fix}")

    def no_detail(_: int) -> str:
        return ""

    def show(column: str) -> Callable[[int], str]:
        return lambda r: f", {column}={table.at[r, column]!r}"

    for column in REQUIRED:
        report(
            f"empty {column}",
            table.index[table[column].str.strip() == ""],
            f"fill in {column} or remove the row",
            no_detail,
        )
    report(
        "duplicate image_id",
        table.index[table["image_id"].duplicated(keep=False) & (table["image_id"] != "")],
        "make every image_id unique (e.g. include the folder in it)",
        no_detail,
    )
    report(
        "unknown split",
        table.index[~table["split"].isin(SPLITS) & (table["split"].str.strip() != "")],
        f"use one of {', '.join(SPLITS)}",
        show("split"),
    )
    splits = set(table["split"])
    if ("query" in splits) != ("gallery" in splits):
        has, lacks = ("query", "gallery") if "query" in splits else ("gallery", "query")
        problems.append(
            f"split has {has} rows but no {lacks} rows; a query-gallery protocol needs both "
            f"(or use split 'test' for all-vs-all)"
        )
    report(
        "bad orientation",
        table.index[~table["orientation"].isin(ORIENTATIONS)],
        "use 'left', 'right' or leave it empty",
        show("orientation"),
    )
    report(
        "malformed keypoints",
        [r for r, text in enumerate(table["keypoints"]) if text and not _keypoints_ok(text)],
        "write a JSON list of numbers [x, y, v, ...] (length a multiple of 3) or leave it empty",
        no_detail,
    )
    report(
        "malformed bbox",
        [r for r, text in enumerate(table["bbox"]) if text and not _bbox_ok(text)],
        "write a JSON list [x, y, w, h] in pixels with w and h above 0, or leave it empty",
        show("bbox"),
    )
    looks_inline = [_looks_inline(text) for text in table["silhouette"]]
    report(
        "malformed silhouette",
        [
            r
            for r, text in enumerate(table["silhouette"])
            if looks_inline[r] and not _inline_segmentation(text)
        ],
        "give a mask file relative to the dataset root, a COCO segmentation in JSON (polygons "
        '[x1, y1, ...] or RLE {"size": [h, w], "counts": ...}) or leave it empty',
        no_detail,
    )
    files = table["silhouette"].where([not inline for inline in looks_inline], "")
    for column, values in (("path", table["path"]), ("silhouette", files)):
        report(
            f"absolute {column}",
            [r for r, p in enumerate(values) if p and Path(p).is_absolute()],
            f"make {column} relative to the dataset root {root}",
            show(column),
        )
    exists = _existing(root, table["path"])
    report(
        "missing image file",
        [r for r, ok in enumerate(exists) if not ok and table.at[r, "path"]],
        f"fix path (relative to the dataset root {root}) or remove the row",
        show("path"),
    )
    silhouette_exists = _existing(root, files)
    report(
        "missing silhouette file",
        [r for r, ok in enumerate(silhouette_exists) if not ok and files[r]],
        f"fix silhouette (relative to the dataset root {root}) or leave it empty",
        show("silhouette"),
    )
    if mode != "none":
        to_check = [r for r, ok in enumerate(exists) if ok]
        readable = _readable(root, [table.at[r, "path"] for r in to_check], mode)
        report(
            "unreadable image",
            [r for r, ok in zip(to_check, readable, strict=True) if not ok],
            "replace the file with a valid JPEG/PNG or remove the row",
            show("path"),
        )

    if problems:
        raise UserError(
            f"catalogue has {len(problems)} kind(s) of problem: " + " | ".join(problems)
        )
    return _single_image_warnings(table)


def _image_check_mode(check_images: ImageCheck | bool) -> ImageCheck:
    if check_images is True:
        return "header"
    if check_images is False:
        return "none"
    if check_images not in ("none", "header", "decode"):
        raise UserError(
            f"check_images={check_images!r} is not a known image check; "
            f"use 'none', 'header' or 'decode'"
        )
    return check_images


def _numbers(text: str) -> list[float] | None:
    """The JSON list of numbers in ``text``, or None when it is not one."""
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        return values
    return None


def _keypoints_ok(text: str) -> bool:
    values = _numbers(text)
    return values is not None and len(values) % 3 == 0


def _bbox_ok(text: str) -> bool:
    values = _numbers(text)
    return values is not None and len(values) == 4 and values[2] > 0 and values[3] > 0


def _looks_inline(text: str) -> bool:
    return text.lstrip()[:1] in ("[", "{")


def _inline_segmentation(text: str) -> bool:
    """True for a silhouette cell that is a well-formed COCO segmentation in JSON."""
    if not _looks_inline(text):
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if isinstance(value, dict):
        size, counts = value.get("size"), value.get("counts")
        return (
            isinstance(size, list)
            and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)
            and (isinstance(counts, str) or isinstance(counts, list))
        )
    polygons = value if value and isinstance(value[0], list) else [value]
    return bool(polygons) and all(
        isinstance(p, list)
        and len(p) >= 6
        and len(p) % 2 == 0
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)
        for p in polygons
    )


def _existing(root: Path, paths: Iterable[str]) -> list[bool]:
    return [bool(p) and (root / p).is_file() for p in paths]


def _readable(root: Path, paths: list[str], mode: ImageCheck) -> list[bool]:
    def check(path: str) -> bool:
        try:
            with Image.open(root / path) as image:
                if mode == "decode":
                    image.load()
                else:
                    image.verify()
        except Exception:  # PIL raises many exception types for a corrupt file
            return False
        return True

    with ThreadPoolExecutor(max_workers=_IMAGE_CHECK_THREADS) as pool:
        return list(pool.map(check, paths))


def _single_image_warnings(table: pd.DataFrame) -> list[str]:
    train = table[table["split"] == "train"]
    alone = train[~train["identity"].duplicated(keep=False)]
    image_of = dict(zip(alone["identity"], alone["image_id"], strict=True))
    singles = sorted(image_of)
    warnings = [
        f"identity {identity!r} has a single training image (image_id={image_of[identity]}); "
        f"it gives no positive pair for the triplet loss"
        for identity in singles
    ]
    if warnings:
        shown = ", ".join(repr(i) for i in singles[:5])
        more = f" and {len(singles) - 5} more" if len(singles) > 5 else ""
        log.warning(
            "%d identities have a single training image (%s%s); they add classes but no "
            "positive pairs: add images or move them out of train",
            len(singles),
            shown,
            more,
        )
    return warnings
