"""Model files named in the settings' ``weights`` section: find them, verify them, fetch them.

Teacher runs happen on nodes that may have no internet, so resolving a file never downloads:
a missing file is one error line saying where to put it and which command fetches it.
``pseudomasks fetch-weights`` is that command, meant for a machine with internet; it writes each
file atomically, so an interrupted download never leaves a truncated model behind.

Checksums are optional (an empty ``sha256`` skips the check). Hashing a multi-gigabyte SAM file
takes seconds, so each file's digest is computed once per process and remembered for as long as
its path, size and modification time stay the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from tqdm import tqdm

from pseudomasks.atomic import atomic_open
from pseudomasks.errors import UserError
from pseudomasks.members.base import WeightsSpec

log = logging.getLogger("pseudomasks")

CHUNK = 1 << 20
"""Bytes read per step when hashing or downloading: large files never sit in memory whole."""

DOWNLOAD_TIMEOUT = 60.0
"""Seconds a connection may stall before the download fails."""

_DIGESTS: dict[tuple[str, int, int], str] = {}


class _ChecksumMismatch(Exception):
    """A downloaded file's sha256 differs from the settings'; aborts its atomic write."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of ``path``, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def resolve_weights(name: str, weights: Mapping[str, WeightsSpec], where: str) -> Path:
    """The verified local file of weights entry ``name``; ``where`` names the member asking."""
    if name not in weights:
        known = ", ".join(sorted(weights)) or "none"
        raise UserError(
            f"{where}: weights {name!r} is not an entry of the settings' weights section "
            f"(entries: {known}); add it to config.yaml → weights"
        )
    spec = weights[name]
    path = Path(spec.path)
    if not path.is_file():
        source = f"download {spec.url}" if spec.url else "no url is given; get the file"
        raise UserError(
            f"{where}: weights file {spec.path} ({name!r}) not found; {source} to {spec.path}, "
            "e.g. run 'pseudomasks fetch-weights --settings-json ...' with the same settings on "
            "a machine with internet"
        )
    _verify(name, spec, path)
    return path


def _verify(name: str, spec: WeightsSpec, path: Path) -> None:
    if spec.sha256 and (actual := file_sha256(path)) != spec.sha256.lower():
        raise UserError(
            f"weights file {path} ({name!r}): sha256 is {actual}, expected {spec.sha256}; "
            "it is corrupt or another version: delete it and run 'pseudomasks fetch-weights'"
        )


def fetch_weights(weights: Mapping[str, WeightsSpec]) -> list[str]:
    """Download every entry whose file is missing and check the ones present.

    Returns one line per entry that is still not usable (empty list: all good), so that an
    offline machine reports every missing file at once instead of the first one.
    """
    failures = []
    for name, spec in sorted(weights.items()):
        path = Path(spec.path)
        try:
            if path.is_file():
                _verify(name, spec, path)
                log.info("weights %r: %s is present", name, path)
            else:
                _download(name, spec, path)
                log.info("weights %r: downloaded to %s", name, path)
        except UserError as exc:
            failures.append(str(exc))
    return failures


def _download(name: str, spec: WeightsSpec, path: Path) -> None:
    if not spec.url:
        raise UserError(f"weights {name!r}: {path} is missing and has no url; put the file there")
    digest = hashlib.sha256()
    try:
        with atomic_open(path) as out:
            if spec.imgly_resource:
                _join_imgly_chunks(name, spec, out, digest)
            else:
                with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT) as response:
                    _copy(response, out, digest, name, response.headers.get("Content-Length"))
            if spec.sha256 and digest.hexdigest() != spec.sha256.lower():
                raise _ChecksumMismatch(digest.hexdigest())
    except _ChecksumMismatch as exc:
        raise UserError(
            f"weights {name!r}: {spec.url} has sha256 {exc}, expected {spec.sha256}; nothing "
            "was written: check the url and sha256 in config.yaml → weights"
        ) from exc
    except (urllib.error.URLError, OSError, ValueError, tarfile.TarError, KeyError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UserError(
            f"weights {name!r}: cannot download {spec.url} to {path} ({reason}); run this "
            "where there is internet, or put the file there yourself"
        ) from exc


def _copy(source: BinaryIO, out: BinaryIO, digest: Any | None, name: str, size: str | None) -> None:
    """Stream ``source`` to ``out`` with a progress bar, feeding ``digest`` when given."""
    with tqdm(
        total=int(size or 0) or None, unit="B", unit_scale=True, desc=name, leave=False
    ) as bar:
        while chunk := source.read(CHUNK):
            if digest is not None:
                digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))


def _join_imgly_chunks(name: str, spec: WeightsSpec, out: BinaryIO, digest: Any) -> None:
    """Write resource ``spec.imgly_resource`` of the npm tarball at ``spec.url``.

    @imgly/background-removal-data ships each model as chunks named by their sha256 under
    ``package/dist/``, listed with their byte offsets in ``package/dist/resources.json``; each
    chunk's name is checked against its content before it is appended."""
    with tempfile.TemporaryFile() as tarball:
        with urllib.request.urlopen(spec.url, timeout=DOWNLOAD_TIMEOUT) as response:
            _copy(response, tarball, None, name, response.headers.get("Content-Length"))
        tarball.seek(0)
        with tarfile.open(fileobj=tarball, mode="r:gz") as archive:
            resources = json.load(archive.extractfile("package/dist/resources.json"))
            if spec.imgly_resource not in resources:
                raise ValueError(
                    f"the package has no resource {spec.imgly_resource!r} "
                    f"(it has {', '.join(sorted(resources))})"
                )
            written = 0
            for chunk in sorted(resources[spec.imgly_resource]["chunks"], key=_chunk_start):
                data = archive.extractfile(f"package/dist/{chunk['hash']}").read()
                start, end = chunk["offsets"]
                if start != written or end - start != len(data):
                    raise ValueError(f"chunk {chunk['hash']} does not continue the file")
                if hashlib.sha256(data).hexdigest() != chunk["hash"]:
                    raise ValueError(f"chunk {chunk['hash']} is corrupt")
                digest.update(data)
                out.write(data)
                written = end


def _chunk_start(chunk: Mapping[str, Any]) -> int:
    return int(chunk["offsets"][0])


def check_weights_option(options: Mapping[str, Any], where: str) -> None:
    """A member's ``weights`` option must name an entry (checked against the entries when the
    member is built, since option checks see only the member's own options)."""
    if not options["weights"]:
        raise UserError(f"{where}.weights: name an entry of the settings' weights section")
