"""``reid identify``: which known animals does a new photo show?

A field team keeps a gallery of identified photos, either a folder with one sub-folder per
identity (``gallery/<identity>/**/<image>``) or a catalogue CSV. New photos are ranked against it
by cosine similarity of the trained model's descriptors; an identity scores the similarity of its
best-matching gallery photo, which is what a user checks by eye next.

A cosine similarity alone does not say whether a match is likely, so each match also gets its
false-positive rate, read off the gallery itself (reid.evaluation.false_positives).

Gallery descriptors are cached on disk keyed by the model's weights and each image's path, size
and modification time: re-running after adding photos extracts only the new ones, and a retrained
model or an edited photo is never served a stale descriptor.

A model that sees photos cut to the animal's box (its model.json ``crop``, from a teacher with
``crop_margin``) needs the same box for every photo it describes. The boxes come from the very
teacher that made the training boxes, run as the ``pseudomasks`` command on the photos to
describe (the packages never import each other; the part-map files are the contract), so the user
gives no boxes and new photos are cut exactly as the training ones were.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from reid.atomic import atomic_write_bytes
from reid.catalogue import read_catalogue
from reid.data.crops import AnimalBox, boxes_from_arrays, boxes_to_arrays
from reid.data.images import read_rgb
from reid.data.part_maps import load_crop_boxes
from reid.data.transforms import PROJECT_NORMALISATION, Normalisation
from reid.engine.extract import MODEL_WEIGHTS, extract_descriptors
from reid.errors import UserError
from reid.evaluation.false_positives import (
    best_per_identity,
    false_positive_rate,
    unit_rows,
    wrong_animal_scores,
)
from reid.npz import read_npz

if TYPE_CHECKING:
    from reid.figures.retrieval import QueryResult

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gallery:
    """Gallery images (relative paths under ``root``) and the identity of each; a catalogue
    gallery also has its rows' image ids and the animal boxes its dataset's teachers recorded
    (``teacher_dirs``: the ``masks/`` directory beside a workflow's catalogue)."""

    root: Path
    paths: list[str]
    identities: list[str]
    image_ids: list[str] | None = None
    teacher_dirs: Path | None = None


@dataclass(frozen=True)
class Candidate:
    rank: int
    identity: str
    similarity: float
    best_match: str  # gallery path (relative to its root) of the identity's most similar photo
    # How often a wrong animal scores this high (false_positive_rate()); None for a gallery of
    # one identity, where no animal can be told from another.
    false_positive_rate: float | None


@dataclass(frozen=True)
class Identification:
    """What :func:`identify` found: each new photo's candidates, and the animal boxes the new
    photos and the gallery photos were cut to (None: the model sees whole frames), so that a
    figure cuts them alike without running the teacher again."""

    candidates: list[list[Candidate]]
    query_boxes: list[AnimalBox | None] | None
    gallery_boxes: list[AnimalBox | None] | None


def folder_gallery(folder: Path) -> Gallery:
    """Every image under ``folder/<identity>/`` (any depth), identity = its first sub-folder."""
    if not folder.is_dir():
        raise UserError(f"gallery {folder} is not a directory or a catalogue .csv file")
    paths = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.parent != folder
    )
    if not paths:
        raise UserError(
            f"gallery {folder} holds no images in identity sub-folders: lay it out as "
            f"{folder}/<identity>/<image>.jpg"
        )
    return Gallery(folder, paths, [p.split("/", 1)[0] for p in paths])


def catalogue_gallery(catalogue: Path, root: Path, splits: list[str] | None) -> Gallery:
    """The catalogue's rows (optionally only some splits) as a gallery under dataset ``root``."""
    table = read_catalogue(catalogue)
    if splits:
        table = table[table["split"].isin(splits)]
    if table.empty:
        which = f" with split {' or '.join(splits)}" if splits else ""
        raise UserError(f"gallery catalogue {catalogue} has no rows{which}: nothing to match")
    return Gallery(
        root,
        list(table["path"]),
        list(table["identity"]),
        image_ids=list(table["image_id"]),
        teacher_dirs=catalogue.parent / "masks",
    )


def model_fingerprint(model_dir: Path, preparation: str) -> str:
    """SHA-256 of the model's weights and of what else decides its descriptors (``preparation``:
    how images are prepared, which descriptor it returns): the cache key part that changes when
    the model does (a frozen model keeps its weights when only its input normalisation changes,
    a trained one when only its ``descriptor`` or ``output_stride`` does)."""
    digest = hashlib.sha256(preparation.encode())
    with open(model_dir / MODEL_WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stat_keys(gallery: Gallery) -> np.ndarray:
    """One "path|size|mtime_ns" string per gallery image: equal keys mean an unchanged file."""
    keys = []
    for path in gallery.paths:
        full = gallery.root / path
        try:
            stat = full.stat()
        except FileNotFoundError:
            raise UserError(
                f"gallery image {full} does not exist: fix the catalogue or the --root"
            ) from None
        keys.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    return np.asarray(keys, dtype=str)


def gallery_descriptors(
    model: torch.nn.Module,
    gallery: Gallery,
    cache: Path,
    fingerprint: str,
    img_size: int,
    flip_test: bool,
    device: torch.device,
    workers: int = 0,
    normalisation: Normalisation = PROJECT_NORMALISATION,
    crop: dict | None = None,
) -> tuple[np.ndarray, list[AnimalBox | None] | None]:
    """Descriptors of every gallery image, extracting only those the cache does not hold, and,
    with ``crop``, the animal box each was cut to (by the ``crop`` teacher, see
    :func:`gallery_boxes`; kept in the cache beside the descriptors)."""
    keys = _stat_keys(gallery)
    cached: dict[str, np.ndarray] = {}
    boxes: dict[str, AnimalBox] = {}
    if cache.is_file():
        with read_npz(cache, "a gallery cache", "delete it; it is rebuilt") as data:
            same = str(data["fingerprint"]) == fingerprint and bool(data["flip_test"]) == flip_test
            if same and (crop is None or "crop_box" in data.files):  # older caches kept no boxes
                cached = dict(zip(data["keys"].tolist(), data["features"], strict=True))
                if crop is not None:
                    boxes = boxes_from_arrays(
                        data["keys"].tolist(), data["crop_box"], data["image_shape"]
                    )
    missing = [i for i, key in enumerate(keys.tolist()) if key not in cached]
    log.info(
        "gallery: %d images, %d descriptors reused from %s, %d to extract",
        len(keys),
        len(keys) - len(missing),
        cache,
        len(missing),
    )
    if missing:
        paths = [gallery.root / gallery.paths[i] for i in missing]
        found = gallery_boxes(gallery, missing, crop, device) if crop else None
        fresh = extract_descriptors(
            model,
            paths,
            img_size,
            device,
            flip_test=flip_test,
            workers=workers,
            normalisation=normalisation,
            boxes=found,
        )
        new_keys = keys[missing].tolist()
        cached.update(zip(new_keys, fresh, strict=True))
        if found is not None:
            boxes |= {k: b for k, b in zip(new_keys, found, strict=True) if b is not None}
    features = np.stack([cached[key] for key in keys.tolist()]).astype(np.float32)
    kept = [boxes.get(key) for key in keys.tolist()] if crop else None
    if missing or len(cached) != len(keys):
        buffer = io.BytesIO()
        arrays = {}
        if kept is not None:
            arrays["crop_box"], arrays["image_shape"] = boxes_to_arrays(kept)
        np.savez(
            buffer,
            fingerprint=np.asarray(fingerprint),
            flip_test=np.asarray(flip_test),
            keys=keys,
            features=features,
            **arrays,
        )
        atomic_write_bytes(cache, buffer.getvalue())
    return features, kept


def rank_identities(
    queries: np.ndarray,
    gallery_features: np.ndarray,
    gallery: Gallery,
    k: int,
    wrong: np.ndarray,
) -> list[list[Candidate]]:
    """Top-``k`` identities of every query; an identity scores its best photo's cosine similarity,
    and its false-positive rate is that score's place among ``wrong`` (:func:`wrong_animal_scores`)."""
    if k < 1:
        raise UserError(f"--top-k {k}: must be at least 1")
    similarity = unit_rows(queries) @ unit_rows(gallery_features).T  # Q×G
    codes, names = pd.factorize(pd.Series(gallery.identities), sort=True)
    best, best_image = best_per_identity(similarity, codes, len(names))
    order = np.argsort(-best, axis=1, kind="stable")[:, :k]
    return [
        [
            Candidate(
                rank + 1,
                str(names[identity]),
                float(best[row, identity]),
                gallery.paths[best_image[row, identity]],
                false_positive_rate(best[row, identity], wrong),
            )
            for rank, identity in enumerate(order[row])
        ]
        for row in range(len(queries))
    ]


def pseudomasks_command() -> str:
    """The ``pseudomasks`` console script of this Python's environment, else the one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / "pseudomasks"
    if beside.is_file():
        return str(beside)
    found = shutil.which("pseudomasks")
    if found is None:
        raise UserError(
            "this model sees photos cut to the teacher's animal boxes, and the 'pseudomasks' "
            "command that draws them is not installed: install the project with its teacher "
            "(pip install -e .) in this environment"
        )
    return found


def teacher_boxes(paths: list[Path], crop: dict, device: torch.device) -> list[AnimalBox | None]:
    """The animal box of each photo, from the teacher of model.json's ``crop`` run on them with
    ``pseudomasks run`` in a scratch directory; None (whole photo) where it found no animal."""
    with tempfile.TemporaryDirectory(prefix="reid-identify-boxes-") as scratch:
        work = Path(scratch)
        ids = [f"photo{i:06d}" for i in range(len(paths))]
        pd.DataFrame(
            {
                "image_id": ids,
                "path": [str(p.absolute()) for p in paths],
                "identity": "",
                "split": "test",
            }
        ).to_csv(work / "catalogue.csv", index=False)
        (work / "teacher.json").write_text(json.dumps(crop["teacher_settings"]), encoding="utf-8")
        command = [
            pseudomasks_command(),
            "run",
            "--catalogue",
            str(work / "catalogue.csv"),
            "--root",
            str(work),
            "--settings",
            str(work / "teacher.json"),
            "--out",
            str(work / "masks"),
            "--device",
            "cuda" if device.type == "cuda" else "cpu",
        ]
        log.info("boxing %d photos with teacher %s", len(paths), crop["teacher_id"])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise UserError(
                f"the teacher ({crop['teacher_id']}) that boxes photos for this model failed: "
                f"{lines[-1] if lines else f'exit code {done.returncode}'}"
            )
        teacher_dir = work / "masks" / crop["teacher_id"]
        if not teacher_dir.is_dir():
            raise UserError(
                f"the teacher settings in model.json no longer give teacher id "
                f"{crop['teacher_id']} (pseudomasks changed?): retrain the model"
            )
        _, boxes = load_crop_boxes(teacher_dir)
    unboxed = sum(i not in boxes for i in ids)
    if unboxed:
        log.warning(
            "%d of %d photos got no animal box: their whole frames are used", unboxed, len(ids)
        )
    return [boxes.get(i) for i in ids]


def gallery_boxes(
    gallery: Gallery, rows: list[int], crop: dict, device: torch.device
) -> list[AnimalBox | None]:
    """The animal boxes of gallery ``rows``: those the model's teacher recorded for a workflow
    catalogue (its directory beside the catalogue, when there), else drawn by that teacher
    now (:func:`teacher_boxes`)."""
    teacher_dir = (gallery.teacher_dirs or Path("/nonexistent")) / crop["teacher_id"]
    if gallery.image_ids is None or not (teacher_dir / "index.json").is_file():
        return teacher_boxes([gallery.root / gallery.paths[i] for i in rows], crop, device)
    _, recorded = load_crop_boxes(teacher_dir)
    log.info("gallery: animal boxes from %s", teacher_dir)
    return [recorded.get(gallery.image_ids[i]) for i in rows]


def check_readable(paths: list[Path]) -> None:
    """Fail on the first missing or corrupt new photo before any model work starts."""
    if not paths:
        raise UserError("no images to identify: pass one or more image paths")
    for path in paths:
        read_rgb(path, missing_fix="check the path of the photo to identify")


def default_cache(model_dir: Path, gallery_source: Path) -> Path:
    """Per model and gallery: ``<model_dir>/identify-cache/<hash of the gallery's path>.npz``."""
    key = hashlib.sha256(str(gallery_source.resolve()).encode()).hexdigest()[:16]
    return model_dir / "identify-cache" / f"{key}.npz"


def identify(
    model_dir: Path,
    gallery: Gallery,
    images: list[Path],
    k: int,
    cache: Path,
    device: torch.device,
    workers: int = 0,
) -> Identification:
    """Top-``k`` gallery identities of each new image (see the module docstring)."""
    from reid.engine.extract import flip_tested, load_trained_model

    check_readable(images)
    model, config = load_trained_model(model_dir, device)
    img_size = config["model"]["img_size"]
    normalisation = Normalisation.of(config["model"])
    flip_test = flip_tested(config)
    crop = config.get("crop")
    cropped_by = f" cut to teacher {crop['teacher_id']}'s boxes" if crop else ""
    descriptor = config["model"].get("descriptor", "before_bnneck")
    output_stride = config["model"].get("output_stride")
    # settings other than the defaults only, so that caches of earlier models stay valid
    network = "" if descriptor == "before_bnneck" else f" {descriptor}"
    network += f" stride {output_stride}" if output_stride else ""
    known, known_boxes = gallery_descriptors(
        model,
        gallery,
        cache,
        model_fingerprint(model_dir, f"{img_size} {normalisation}{cropped_by}{network}"),
        img_size,
        flip_test,
        device,
        workers,
        normalisation,
        crop,
    )
    query_boxes = teacher_boxes(images, crop, device) if crop else None
    queries = extract_descriptors(
        model,
        images,
        img_size,
        device,
        flip_test=flip_test,
        normalisation=normalisation,
        boxes=query_boxes,
    )
    wrong = wrong_animal_scores(known, gallery.identities)
    if len(wrong) == 0:
        log.warning("the gallery holds one identity: no false-positive rate can be given")
    else:
        log.info(
            "false-positive rates from %d gallery photos searched without their own animal",
            len(wrong),
        )
    candidates = rank_identities(queries, known, gallery, k, wrong)
    return Identification(candidates, query_boxes, known_boxes)


def query_results(
    images: list[Path], results: list[list[Candidate]], gallery: Gallery
) -> list[QueryResult]:
    """The new photos with their candidates' best gallery photos, as the figures draw them
    (identities unknown, so the matches are neither right nor wrong)."""
    from reid.figures.retrieval import Match, QueryResult

    return [
        QueryResult(
            str(image),
            image,
            None,
            [
                Match(
                    c.best_match,
                    gallery.root / c.best_match,
                    c.identity,
                    c.similarity,
                    None,
                    c.false_positive_rate,
                )
                for c in candidates
            ],
        )
        for image, candidates in zip(images, results, strict=True)
    ]


def draw_similarity_figure(
    model_dir: Path,
    gallery: Gallery,
    images: list[Path],
    found: Identification,
    device: torch.device,
    out: Path,
) -> None:
    """Each new photo beside its candidates' best gallery photos, every cell heated by its share
    of the pair's similarity (reid.figures.similarity; convolutional baselines only), the photos
    cut to the boxes matching cut them to."""
    from reid.engine.extract import load_trained_model
    from reid.figures.similarity import draw_similarity, trained_model_rows, warn_if_disagreeing

    model, config = load_trained_model(model_dir, device)
    queries = query_results(images, found.candidates, gallery)
    boxes = None
    if found.query_boxes is not None:  # the model crops: both sides were boxed
        boxes = dict(zip(map(str, images), found.query_boxes, strict=True))
        boxes |= dict(zip(gallery.paths, found.gallery_boxes, strict=True))
    rows = trained_model_rows(model, config, queries, device, boxes)
    warn_if_disagreeing(
        rows, "the table's", "the figure does not show what was ranked; please report it"
    )
    draw_similarity(rows, out)


def results_table(images: list[Path], results: list[list[Candidate]]) -> str:
    """Plain-text table: one line per (image, rank)."""
    rows = [
        ("image", "rank", "identity", "similarity", "false-positive rate", "best gallery match")
    ]
    for image, candidates in zip(images, results, strict=True):
        rows.extend(
            (
                str(image),
                str(c.rank),
                c.identity,
                f"{c.similarity:.3f}",
                "-" if c.false_positive_rate is None else f"{c.false_positive_rate:.2g}",
                c.best_match,
            )
            for c in candidates
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def results_json(images: list[Path], results: list[list[Candidate]]) -> list[dict]:
    return [
        {
            "image": str(image),
            "matches": [
                {
                    "rank": c.rank,
                    "identity": c.identity,
                    "similarity": round(c.similarity, 6),
                    "false_positive_rate": c.false_positive_rate,
                    "best_match": c.best_match,
                }
                for c in candidates
            ],
        }
        for image, candidates in zip(images, results, strict=True)
    ]
