"""Dataset adapters: turn each dataset's own layout into catalogue rows (reid.catalogue).

`build_catalogue(adapter, root, options)` is the one entry point. Each adapter is a module with
one public function `load(root, **options)`; its keyword arguments are the adapter's options,
so the registry can reject unknown option keys before touching any file. Adapter modules are
imported only when used, so a broken or unfinished adapter never breaks the others.

One option works with every adapter and is applied after it: `flank_identities: true` makes
each flank of an animal its own identity (`<identity>_left`, `<identity>_right`), for species
whose two flanks carry different patterns, so a left flank is only ever matched with left
flanks of the same animal (as flank catalogues of zebra, tiger or nyala are kept). The split is
the adapter's, made on whole animals first: both flanks of an animal, and of an encounter, stay
on the same side.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from reid.catalogue import conform_catalogue, sort_catalogue, validate_catalogue
from reid.errors import UserError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")

# Adapter name -> module holding its `load`. `synthetic` is special: its options are the fields
# of SyntheticSpec and it writes its images into root (see _synthetic_adapter).
ADAPTERS: dict[str, str] = {
    "atrw": "reid.datasets.atrw",
    "yakreid": "reid.datasets.yakreid",
    "folder": "reid.datasets.folder",
    "csv": "reid.datasets.csv_table",
    "wildlife_datasets": "reid.datasets.wildlife",
}
ADAPTER_NAMES: tuple[str, ...] = (*ADAPTERS, "synthetic")

# Adapters whose rows come from a user's own table: validation keeps that table's order so
# row numbers in messages point into the user's file. Other adapters are sorted first, so row
# numbers point into the catalogue.csv that write_catalogue will produce.
_USER_ORDERED = frozenset({"csv"})


def build_catalogue(
    adapter: str,
    root: Path | str,
    options: dict | None = None,
    check_images: str = "none",
) -> pd.DataFrame:
    """Catalogue rows for the dataset at `root`, validated (files exist; images checked as
    `check_images` says: none, header or decode).

    Raises UserError for an unknown adapter or option, a missing required option, or a dataset
    that does not match its adapter's layout.
    """
    root = Path(root)
    options = dict(options or {})
    flanks = options.pop("flank_identities", False)
    if not isinstance(flanks, bool):
        raise UserError(f"dataset option flank_identities={flanks!r}: use true or false")
    load, valid, required = _adapter(adapter)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise UserError(
            f"dataset adapter {adapter!r}: unknown option(s) {', '.join(unknown)}; "
            f"valid options: {', '.join([*valid, 'flank_identities'])}"
        )
    missing = [name for name in required if name not in options]
    if missing:
        raise UserError(
            f"dataset adapter {adapter!r}: missing required option(s) {', '.join(missing)}"
        )
    if adapter == "synthetic":
        root.mkdir(parents=True, exist_ok=True)
    elif not root.is_dir():
        raise UserError(f"dataset root {root} is not a directory; fix the dataset's root path")
    table = conform_catalogue(load(root, **options), source=f"dataset adapter {adapter!r}")
    if flanks:
        table = flank_identities(table)
    if adapter not in _USER_ORDERED:
        table = sort_catalogue(table)
    validate_catalogue(table, root, check_images=check_images)
    return sort_catalogue(table)


def flank_identities(table: pd.DataFrame) -> pd.DataFrame:
    """The rows with each identity split by flank: identity ``<identity>_<orientation>``."""
    missing = table.index[~table["orientation"].isin(("left", "right"))]
    if len(missing):
        shown = ", ".join(table.loc[missing[:3], "path"])
        raise UserError(
            f"dataset option flank_identities: {len(missing)} image(s) have no left/right "
            f"orientation (e.g. {shown}); give every image its flank (folder adapter: a pattern "
            f"with an (?P<orientation>...) group) or drop the option"
        )
    return table.assign(identity=table["identity"] + "_" + table["orientation"])


@dataclasses.dataclass(frozen=True)
class ExpectedPath:
    """A file or folder a dataset's adapter reads, which must exist before it runs."""

    option: str | None  # the adapter option naming it; None for the dataset root
    path: Path
    what: str
    folder: bool


def expected_paths(
    adapter: str, root: Path | str, options: dict | None = None
) -> list[ExpectedPath]:
    """The dataset root and every file or folder the adapter's options name (declared by the
    adapter module as FILE_OPTIONS / FOLDER_OPTIONS), resolved as `load` resolves them: what a
    workflow can check before any job runs. Empty for `synthetic`, which writes its root."""
    if adapter == "synthetic":
        return []
    root = Path(root)
    module = importlib.import_module(ADAPTERS[adapter])
    values = {
        p.name: p.default
        for p in list(inspect.signature(module.load).parameters.values())[1:]
        if p.default is not inspect.Parameter.empty
    }
    values.update(options or {})
    paths = [ExpectedPath(None, root, "dataset root", folder=True)]
    for declared, folder in (
        (getattr(module, "FILE_OPTIONS", {}), False),
        (getattr(module, "FOLDER_OPTIONS", {}), True),
    ):
        for option, what in declared.items():
            if option not in values:
                continue  # a required option left out: build_catalogue names it
            path = root / _formatted(str(values[option]), values)
            if path != root:
                paths.append(ExpectedPath(option, path, what, folder))
    return paths


def _formatted(value: str, values: dict) -> str:
    """`value` with `{option}` fields filled from the options (yakreid's `{test_split}`)."""
    try:
        return value.format_map(values)
    except (KeyError, IndexError, ValueError):
        return value


def option_path(root: Path, value: str, option: str, what: str) -> Path:
    """The file an adapter option names (relative to root, or absolute), which must exist."""
    path = root / value
    if not path.is_file():
        raise UserError(
            f"{what} not found at {path}; set option {option} to its location "
            f"(relative to the dataset root {root}, or absolute)"
        )
    return path


def _adapter(name: str) -> tuple[Callable[..., pd.DataFrame], list[str], list[str]]:
    """(load function, valid option names, required option names) of adapter `name`."""
    if name == "synthetic":
        return _synthetic_adapter()
    if name not in ADAPTERS:
        raise UserError(f"unknown dataset adapter {name!r}; use one of {', '.join(ADAPTER_NAMES)}")
    load = importlib.import_module(ADAPTERS[name]).load
    params = list(inspect.signature(load).parameters.values())[1:]  # skip root
    return (
        load,
        [p.name for p in params],
        [p.name for p in params if p.default is inspect.Parameter.empty],
    )


def _synthetic_adapter() -> tuple[Callable[..., pd.DataFrame], list[str], list[str]]:
    from reid.datasets.synthetic import SyntheticSpec, generate

    def load(root: Path, **options: object) -> pd.DataFrame:
        # YAML has no tuples: accept lists for the spec's tuple fields.
        spec = SyntheticSpec(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
        )
        return generate(root, spec)

    fields = dataclasses.fields(SyntheticSpec)
    required = [
        f.name
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    return load, [f.name for f in fields], required
