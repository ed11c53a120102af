"""Any dataset of the `wildlife-datasets` library, read by that library's own class.

Researchers already keep their data with wildlife-datasets (one class per public dataset, a
common metadata table, the field's standard splits), so this adapter takes the class's metadata
as it is rather than re-parsing 40+ layouts: `root` is the folder the user downloaded the
dataset into (`NyalaData.get_data(root)`), option `dataset` names the class.

Its metadata becomes catalogue rows:
    image_id     the library's image_id (unique per row, as the library checks)
    path         the library's path, relative to root
    identity     the library's identity; rows of its 'unknown' identity are left out by the split
    orientation  'left'/'right' as they are; other viewpoints ('front', 'top', 'frontleft', ...)
                 become '' (unknown: the teacher estimates the flank) unless option
                 `orientation_map` maps them, e.g. {frontleft: left}
    encounter    the library's `encounter`, else `video`, else the calendar day of `date`:
                 photos of one animal in one encounter are junk for each other (all-vs-all)
    bbox         the library's box [x, y, w, h] in image pixels, as JSON
    keypoints    the library's `keypoints` as JSON [x, y, v, ...] for the `annotations` pose
                 member: lists of x, y, visibility triples (ATRW) as they are; lists of x, y
                 pairs (CZoo, CTai face landmarks) get v = 2, or 0 where a point is missing (NaN)
    silhouette   the library's `segmentation`: a mask file under root (e.g. SMALST) as its path,
                 polygons or RLE (e.g. SeaTurtleID2022) as COCO JSON in the cell; the teacher's
                 `annotations` segmentation member reads either as the animal's foreground

Option `split` picks one of the library's split classes and passes it the other keys, e.g.
    {kind: disjoint_set, ratio_class_test: 0.5, seed: 0}      new animals at test time
    {kind: closed_set, ratio_train: 0.8, seed: 0}             every animal in train and test
    {kind: open_set, ratio_train: 0.8, n_class_test: 10}      some animals only at test time
    {kind: time_proportion, ratio: 0.5}                       each animal's earlier days train
    {kind: time_cutoff, year: 2020}                           years before train, that year test
    {kind: original}                                          the dataset's published split
Its training rows become split 'train', its test rows 'test' (evaluated all-vs-all); rows in
neither (unknown identity, no date for a time-aware split, after the cutoff) are left out.
`original` reads the library's `original_split` column, where the dataset has one (ATRW,
NyalaData, SeaTurtleID2022, ...): 'train' and 'test' as they are; other values (a validation
set) are left out, logged with their counts.

The library is imported only when a catalogue is built, so the workflow's preflight (which reads
this module's options) works without it.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import inspect
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from reid.errors import UserError

log = logging.getLogger(__name__)

# `kind` -> class of wildlife_datasets.splits. The multi-split classes (TimeCutoffSplitAll,
# RandomProportion) and FullSplit (no test set) give no single train/test split.
SPLIT_KINDS: dict[str, str] = {
    "closed_set": "ClosedSetSplit",
    "open_set": "OpenSetSplit",
    "disjoint_set": "DisjointSetSplit",
    "time_proportion": "TimeProportionSplit",
    "time_proportion_open_set": "TimeProportionOpenSetSplit",
    "time_cutoff": "TimeCutoffSplit",
}
ORIGINAL = "original"  # split kind: the dataset's own `original_split` column
ENCOUNTER_COLUMNS = ("encounter", "video")
_INSTALL = "install it with pip install 'paw-reid[wildlife]' (make installs it)"
_SHOWN = 3


def load(
    root: Path,
    dataset: str,
    split: dict[str, object],
    orientation_map: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Catalogue rows of wildlife-datasets class `dataset` read from `root`, split by `split`."""
    root = Path(root)
    datasets, splits = _library()
    cls = _dataset_class(datasets, dataset)
    splitter = None if _kind(split) == ORIGINAL else _splitter(splits, split)
    df = _metadata(cls, dataset, root)
    if not _has_identities(df, cls.unknown_name):
        raise UserError(
            f"wildlife_datasets {dataset} at {root}: the metadata has no identities (every row "
            f"is empty or {cls.unknown_name!r}); re-identification needs them: use a dataset "
            f"with identity labels or label this one"
        )
    if splitter is None:
        where = _original_split(df, dataset)
    else:
        where = _split_labels(splitter, df, split)
    kept = where != ""
    if (~kept).any():
        log.info(
            "wildlife_datasets %s: %d of %d rows are in neither train nor test of split %s "
            "(unknown identity, no date or outside the split); they are left out",
            dataset,
            int((~kept).sum()),
            len(df),
            split["kind"],
        )
    df, where = df[kept], where[kept]
    _warn_shared_images(df, dataset)
    return pd.DataFrame(
        {
            "image_id": [_text(v) for v in df["image_id"]],
            "path": [Path(str(p)).as_posix() for p in df["path"]],
            "identity": [_text(v) for v in df["identity"]],
            "split": list(where),
            "orientation": _orientations(df, dict(orientation_map or {}), dataset),
            "encounter": _encounters(df),
            "bbox": _cells(df, "bbox", _box),
            "keypoints": _keypoints(df, dataset),
            "silhouette": _cells(df, "segmentation", _silhouette),
        }
    )


def _library() -> tuple[ModuleType, ModuleType]:
    """The `wildlife_datasets.datasets` and `.splits` modules."""
    try:
        from wildlife_datasets import datasets, splits
    except ImportError as err:
        raise UserError(
            f"adapter wildlife_datasets needs wildlife-datasets ({err}); {_INSTALL}"
        ) from None
    return datasets, splits


def _dataset_class(datasets: ModuleType, name: str) -> type:
    """The dataset class called `name`, or a UserError listing the close names."""
    base = datasets.WildlifeDataset
    names = sorted(
        n
        for n, v in vars(datasets).items()
        if isinstance(v, type) and issubclass(v, base) and v not in (base, datasets.DatasetFactory)
    )
    if name in names:
        return getattr(datasets, name)
    close = difflib.get_close_matches(name, names, n=_SHOWN, cutoff=0.6)
    close += [n for n in names if n.lower() == str(name).lower() and n not in close]
    hint = f"did you mean {', '.join(close)}?" if close else f"e.g. {', '.join(names[:_SHOWN])}"
    raise UserError(
        f"wildlife_datasets has no dataset class {name!r} ({hint}); set option dataset to one "
        f"of the {len(names)} classes of wildlife_datasets.datasets"
    )


def _kind(split: object) -> object:
    kind = split.get("kind") if isinstance(split, dict) else split
    if kind == ORIGINAL and isinstance(split, dict) and len(split) > 1:
        extra = ", ".join(sorted(k for k in split if k != "kind"))
        raise UserError(
            f"wildlife_datasets option split: kind original takes no arguments (got {extra}); "
            f"the dataset's published split is used as it is"
        )
    if not isinstance(split, dict) or (kind != ORIGINAL and kind not in SPLIT_KINDS):
        raise UserError(
            f"wildlife_datasets option split.kind={kind!r} is unknown; use one of "
            f"{', '.join([*SPLIT_KINDS, ORIGINAL])}, e.g. split: {{kind: disjoint_set, "
            f"ratio_class_test: 0.5, seed: 0}}"
        )
    return kind


def _splitter(splits: ModuleType, split: dict[str, object]) -> object:
    """The library's splitter for option `split` ({kind: ..., its arguments})."""
    cls = getattr(splits, SPLIT_KINDS[split["kind"]])
    arguments = {k: v for k, v in split.items() if k != "kind"}
    allowed = sorted(
        {
            p.name
            for klass in (cls, splits.BalancedSplit)
            for p in list(inspect.signature(klass.__init__).parameters.values())[1:]
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        }
        - {"col_label", "disable_tqdm"}
    )
    unknown = sorted(set(arguments) - set(allowed))
    if unknown:
        raise UserError(
            f"wildlife_datasets option split: {', '.join(unknown)} is not an argument of "
            f"{cls.__name__} (kind {split['kind']}); allowed: {', '.join(allowed)}"
        )
    try:
        return cls(**arguments)
    except Exception as err:  # the library raises bare Exception for bad arguments
        raise UserError(
            f"wildlife_datasets option split {split!r}: {cls.__name__} refuses it ({_one_line(err)}); "
            f"fix the split's arguments"
        ) from None


def _metadata(cls: type, name: str, root: Path) -> pd.DataFrame:
    """The class's metadata table for `root`. File checks are left to the catalogue's
    validation, which names every missing file the project's way."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            df = cls(str(root), check_files=False).df
    except Exception as err:  # each class fails its own way on a folder that is not its dataset
        said = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
        detail = f"; it printed: {' / '.join(said[:_SHOWN])}" if said else ""
        raise UserError(
            f"wildlife_datasets {name} cannot read {root} ({type(err).__name__}: "
            f"{_one_line(err)}{detail}); set root to the folder that {name}.get_data(root) "
            f"downloaded the dataset into, in the layout it left there"
        ) from None
    if printed.getvalue().strip():
        log.info("wildlife_datasets %s: %s", name, printed.getvalue().strip())
    if df.empty:
        raise UserError(
            f"wildlife_datasets {name} found no images in {root}; set root to the folder that "
            f"{name}.get_data(root) downloaded the dataset into"
        )
    return df


def _has_identities(df: pd.DataFrame, unknown: str) -> bool:
    identity = df["identity"]
    return bool((identity.notna() & (identity.astype(str) != unknown)).any())


def _split_labels(splitter: object, df: pd.DataFrame, split: dict[str, object]) -> pd.Series:
    """'train', 'test' or '' for each row of `df`, from the splitter's first split."""
    try:
        idx_train, idx_test = splitter.split(df)[0]
    except Exception as err:  # e.g. a time-aware split of metadata without dates
        raise UserError(
            f"wildlife_datasets split {split!r} fails on this dataset ({_one_line(err)}); "
            f"pick another split kind"
        ) from None
    where = pd.Series("", index=df.index, dtype=object)
    where.loc[list(idx_train)] = "train"
    where.loc[list(idx_test)] = "test"
    for part in ("train", "test"):
        if not (where == part).any():
            raise UserError(
                f"wildlife_datasets split {split!r} puts no image in {part}; change its "
                f"arguments (ratios, n_class_test, year) or pick another split kind"
            )
    return where


def _original_split(df: pd.DataFrame, name: str) -> pd.Series:
    """'train', 'test' or '' for each row of `df`, from the dataset's `original_split`."""
    if "original_split" not in df.columns:
        raise UserError(
            f"wildlife_datasets {name} has no published split (no original_split column in its "
            f"metadata); pick a split kind of the library, e.g. split: {{kind: disjoint_set, "
            f"ratio_class_test: 0.5, seed: 0}}"
        )
    values = pd.Series([_text(v).lower() for v in df["original_split"]], index=df.index)
    where = values.where(values.isin(["train", "test"]), "")
    other = values[where == ""].replace("", "(empty)").value_counts()
    if len(other):
        log.info(
            "wildlife_datasets %s: original_split %s left out (neither train nor test)",
            name,
            ", ".join(f"{v!r} ({n} rows)" for v, n in other.items()),
        )
    for part in ("train", "test"):
        if not (where == part).any():
            raise UserError(
                f"wildlife_datasets {name}: its original_split has no {part} rows (only "
                f"{', '.join(sorted(set(values)))}); pick a split kind of the library instead"
            )
    return where


def _warn_shared_images(df: pd.DataFrame, name: str) -> None:
    shared = df["path"].duplicated(keep=False)
    if shared.any():
        log.warning(
            "wildlife_datasets %s: %d rows share their image with another row (several animals "
            "in one photo, told apart by bbox): give the dataset a teacher with detector: "
            "{member: annotations} and a crop_margin so that each row sees its own animal "
            "(README 'Teachers'); otherwise each such row sees the whole photo",
            name,
            int(shared.sum()),
        )


def _orientations(df: pd.DataFrame, mapping: dict[str, str], name: str) -> list[str]:
    if "orientation" not in df.columns:
        return [""] * len(df)
    bad = {k: v for k, v in mapping.items() if v not in ("left", "right", "")}
    if bad:
        raise UserError(
            f"wildlife_datasets option orientation_map maps to {sorted(set(bad.values()))}; "
            f"map each value to left, right or '' (unknown)"
        )
    mapping = {"left": "left", "right": "right", **mapping}
    values = [_text(v) for v in df["orientation"]]
    unmapped = pd.Series([v for v in values if v and v not in mapping]).value_counts()
    if len(unmapped):
        log.warning(
            "wildlife_datasets %s: orientation %s left empty (the project knows left and right "
            "only); map them with option orientation_map, e.g. {%s: left}",
            name,
            ", ".join(f"{v!r} ({n} rows)" for v, n in unmapped.items()),
            unmapped.index[0],
        )
    return [mapping.get(v, "") for v in values]


def _encounters(df: pd.DataFrame) -> list[str]:
    for column in ENCOUNTER_COLUMNS:
        if column in df.columns:
            return [_text(v) for v in df[column]]
    if "date" in df.columns:
        days = pd.to_datetime(df["date"], errors="coerce", format="mixed")
        return ["" if pd.isna(d) else d.strftime("%Y-%m-%d") for d in days]
    return [""] * len(df)


def _cells(df: pd.DataFrame, column: str, convert: Callable[[object], str]) -> list[str]:
    """`convert` of each value of `column`, or '' for every row when the library has none."""
    if column not in df.columns:
        return [""] * len(df)
    return [convert(v) for v in df[column]]


def _box(value: object) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return ""
    if value is None or not pd.api.types.is_list_like(value) or len(value) != 4:
        return ""
    numbers = [v.item() if hasattr(v, "item") else v for v in value]
    if any(pd.isna(v) for v in numbers):
        return ""
    return json.dumps(numbers)


def _keypoints(df: pd.DataFrame, name: str) -> list[str]:
    """Each row's keypoints as JSON [x, y, v, ...]. The library keeps triples for some datasets
    and pairs for others; the dataset's rows decide: triples when every list's length divides
    by 3 and every third value is a COCO visibility flag (0, 1, 2), else pairs when every
    length is even. Anything else is left out, logged."""
    if "keypoints" not in df.columns:
        return [""] * len(df)
    rows = [_numbers_or_none(v) for v in df["keypoints"]]
    given = [r for r in rows if r is not None and len(r)]
    if not given:
        return [""] * len(df)
    if all(len(r) % 3 == 0 and np.isin(r[2::3], (0, 1, 2)).all() for r in given):
        triples = [None if r is None or not len(r) else r.reshape(-1, 3) for r in rows]
    elif all(len(r) % 2 == 0 for r in given):
        pairs = [None if r is None or not len(r) else r.reshape(-1, 2) for r in rows]
        triples = [None if p is None else _with_visibility(p) for p in pairs]
    else:
        log.warning(
            "wildlife_datasets %s: its keypoints are neither [x, y, v] triples nor [x, y] pairs "
            "in every row; the catalogue leaves them out",
            name,
        )
        return [""] * len(df)
    return ["" if t is None else json.dumps(t.ravel().tolist()) for t in triples]


def _numbers_or_none(value: object) -> np.ndarray | None:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip()) if value.strip() else None
        except (ValueError, SyntaxError):
            return None
    if value is None or not pd.api.types.is_list_like(value):
        return None
    try:
        return np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None


def _with_visibility(pairs: np.ndarray) -> np.ndarray:
    """x, y, v rows: v = 2 (labelled, visible) where the point is there, 0 and (0, 0) where not."""
    missing = ~np.isfinite(pairs).all(axis=1)
    return np.column_stack([np.where(missing[:, None], 0.0, pairs), np.where(missing, 0, 2)])


def _silhouette(value: object) -> str:
    """A mask file's path as it is; polygons or an RLE as compact COCO JSON; '' when missing."""
    if isinstance(value, str):
        value = value.strip()
        if value[:1] not in ("[", "{"):
            return Path(value).as_posix() if value else ""
        try:  # the library's CSV-backed classes keep the Python literal as text
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value  # the catalogue check names it as a malformed silhouette
    if _missing(value) or (pd.api.types.is_list_like(value) and len(value) == 0):
        return ""
    return json.dumps(_plain(value), separators=(",", ":"))


def _plain(value: object) -> object:
    """`value` with numpy arrays, numbers and bytes made JSON-serialisable."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("ascii")
    if pd.api.types.is_list_like(value):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def _missing(value: object) -> bool:
    return value is None or (not pd.api.types.is_list_like(value) and pd.isna(value))


def _text(value: object) -> str:
    """A metadata cell as text ('' when missing); whole floats lose their '.0'."""
    if _missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__
