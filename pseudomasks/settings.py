"""The resolved settings document the CLI receives, validated, and the teacher id derived from it.

The document has three sections: ``teacher`` (members, fusion options), ``species`` (see
:mod:`pseudomasks.species`) and ``weights`` (name → path, sha256, url). The teacher id hashes
exactly what changes the maps, so that renaming a teacher, moving a weights file or changing the
device reuses the cache, and anything else recomputes it.

The id includes the sha256 of *every* entry in ``weights``: give the CLI only the weights this
teacher uses, or an unrelated model update will invalidate its cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pseudomasks.combine import COMBINE_RULES, POSE_COMBINE_RULES, contributed_keypoints
from pseudomasks.errors import UserError
from pseudomasks.fusion import FUSION_VERSION
from pseudomasks.members.base import POSE_DEFAULTS, WeightsSpec
from pseudomasks.members.registry import member_class
from pseudomasks.silhouette_template import template_regions
from pseudomasks.species import Species, parse_species

FALLBACKS = ("silhouette_template",)
TEACHER_KEYS = {
    "name",
    "mask_size",
    "pose",
    "segmentation",
    "combine",
    "fallback",
    "detector",
    "confidence",
    "pose_combine",
    "crop_margin",
    "crop_min_area",
}
TEACHER_DEFAULTS: Mapping[str, Any] = {
    "pose_combine": "confidence",
    "crop_margin": None,
    "crop_min_area": 0.02,
}
"""Defaults of the teacher keys that came after the first cached maps: see
:meth:`Settings.identity`."""


@dataclass(frozen=True)
class MemberSpec:
    """One member: ``kind`` 'pose'/'segmentation'/'detector', registry ``name``, full options."""

    kind: str
    name: str
    options: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"member": self.name, **self.options}


@dataclass(frozen=True)
class Settings:
    document: Mapping[str, Any]
    teacher_name: str
    mask_size: int
    pose: tuple[MemberSpec, ...]
    segmentation: tuple[MemberSpec, ...]
    combine: str
    pose_combine: str
    fallback: str | None
    detector: MemberSpec | None
    confidence: float
    species: Species
    weights: Mapping[str, WeightsSpec]
    crop_margin: float | None = None
    """None: maps cover the whole image. A number: each image's map covers the animal's box (the
    foreground's extent grown by this fraction of its width/height on each side), the student
    crops to that box, and every catalogue row gets a map (test images need their box too)."""
    crop_min_area: float = 0.02
    """A foreground extent under this fraction of the photo is not cropped to (a speck)."""

    def identity(self) -> dict[str, Any]:
        """Everything that changes the maps, canonical: the teacher id is its hash.

        Options added after teachers were first cached (``teacher.pose_combine``, the pose
        members' ``keypoints``) enter only when they differ from their defaults, so teachers
        that do not use them keep their ids and their cached maps.
        """
        identity = {
            "fusion_version": FUSION_VERSION,
            "mask_size": self.mask_size,
            "confidence": self.confidence,
            "pose": [_without_defaults(m.to_json(), POSE_DEFAULTS) for m in self.pose],
            "segmentation": [m.to_json() for m in self.segmentation],
            "combine": self.combine,
            "fallback": self.fallback,
            # null stays null, so teachers without a detector keep the ids they had before
            # detectors existed
            "detector": self.detector.to_json() if self.detector else None,
            "species": self.species.to_json(),
            "weights": {name: w.sha256 for name, w in sorted(self.weights.items())},
        }
        later = {
            "pose_combine": self.pose_combine,
            "crop_margin": self.crop_margin,
            "crop_min_area": self.crop_min_area,
        }
        return identity | _without_defaults(later, TEACHER_DEFAULTS)


def _without_defaults(entries: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entries.items() if k not in defaults or v != defaults[k]}


def teacher_id(settings: Settings | Mapping[str, Any]) -> str:
    """12 hex digits of the sha256 of the canonical JSON of :meth:`Settings.identity`."""
    if not isinstance(settings, Settings):
        settings = parse_settings(settings)
    canonical = json.dumps(settings.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def read_settings(path: str | None, text: str | None) -> Settings:
    """Settings from ``--settings FILE`` or ``--settings-json STRING`` (exactly one given)."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"settings file {path}: {exc.strerror or exc}") from exc
        source = f"settings file {path}"
    else:
        source = "--settings-json"
    try:
        doc = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise UserError(f"{source}: not valid JSON ({exc})") from exc
    return parse_settings(doc)


def parse_settings(doc: Mapping[str, Any]) -> Settings:
    """Validate the whole document; every problem is a one-line UserError naming the key."""
    if not isinstance(doc, Mapping):
        raise UserError("settings: expected a JSON object with teacher, species, weights")
    teacher = doc.get("teacher")
    if not isinstance(teacher, Mapping):
        raise UserError("settings: 'teacher' must be a mapping")
    unknown = sorted(set(teacher) - TEACHER_KEYS)
    if unknown:
        raise UserError(
            f"settings: unknown key teacher.{unknown[0]}; known: {', '.join(sorted(TEACHER_KEYS))}"
        )
    species = parse_species(doc.get("species"))
    mask_size = teacher.get("mask_size", 64)
    if not isinstance(mask_size, int) or isinstance(mask_size, bool) or not 8 <= mask_size <= 1024:
        raise UserError(
            f"settings: teacher.mask_size must be an integer in [8, 1024], got {mask_size!r}"
        )
    confidence = teacher.get("confidence", 0.3)
    if not isinstance(confidence, (int, float)) or isinstance(confidence, bool) or confidence < 0:
        raise UserError(f"settings: teacher.confidence must be a number >= 0, got {confidence!r}")
    combine = teacher.get("combine", "majority")
    if combine not in COMBINE_RULES:
        raise UserError(
            f"settings: teacher.combine {combine!r} unknown; use one of: {', '.join(COMBINE_RULES)}"
        )
    pose_combine = teacher.get("pose_combine", TEACHER_DEFAULTS["pose_combine"])
    if pose_combine not in POSE_COMBINE_RULES:
        raise UserError(
            f"settings: teacher.pose_combine {pose_combine!r} unknown; use one of: "
            f"{', '.join(POSE_COMBINE_RULES)}"
        )
    fallback = teacher.get("fallback")
    if fallback is not None and fallback not in FALLBACKS:
        raise UserError(
            f"settings: teacher.fallback {fallback!r} unknown; use null or one of: "
            f"{', '.join(FALLBACKS)}"
        )
    if fallback == "silhouette_template":
        template_regions(species)
    pose = _members("pose", teacher.get("pose", []))
    for i, member in enumerate(pose):
        where = f"settings: teacher.pose[{i}] ({member.name})"
        contributed_keypoints(member.options["keypoints"], species, where)
    segmentation = _members("segmentation", teacher.get("segmentation"))
    if not segmentation:
        raise UserError("settings: teacher.segmentation needs at least one member")
    detector = _detector(teacher.get("detector"), (*pose, *segmentation))
    if not pose and fallback is None:
        raise UserError(
            "settings: teacher has no pose members and fallback is null, so no image could get "
            "a map; add a pose member or set teacher.fallback: silhouette_template"
        )
    crop_margin = teacher.get("crop_margin")
    if crop_margin is not None and (
        not isinstance(crop_margin, (int, float))
        or isinstance(crop_margin, bool)
        or not 0 <= crop_margin <= 1
    ):
        raise UserError(
            "settings: teacher.crop_margin must be null (whole images) or a fraction of the "
            f"animal's box in [0, 1], e.g. 0.1; got {crop_margin!r}"
        )
    crop_min_area = teacher.get("crop_min_area", TEACHER_DEFAULTS["crop_min_area"])
    if (
        not isinstance(crop_min_area, (int, float))
        or isinstance(crop_min_area, bool)
        or not 0 <= crop_min_area < 1
    ):
        raise UserError(
            "settings: teacher.crop_min_area must be a fraction of the photo in [0, 1), e.g. "
            f"0.02; got {crop_min_area!r}"
        )
    name = teacher.get("name", "")
    return Settings(
        document=doc,
        teacher_name=str(name),
        mask_size=mask_size,
        pose=pose,
        segmentation=segmentation,
        combine=combine,
        pose_combine=pose_combine,
        fallback=fallback,
        detector=detector,
        confidence=float(confidence),
        species=species,
        weights=_weights(doc.get("weights") or {}),
        crop_margin=None if crop_margin is None else float(crop_margin),
        crop_min_area=float(crop_min_area),
    )


def _members(kind: str, raw: Any) -> tuple[MemberSpec, ...]:
    if raw is None:
        return ()
    if isinstance(raw, (str, Mapping)) or not isinstance(raw, Sequence):
        raise UserError(f"settings: teacher.{kind} must be a list of {{member: name, ...options}}")
    return tuple(
        _member(kind, entry, f"settings: teacher.{kind}[{i}]") for i, entry in enumerate(raw)
    )


def _detector(raw: Any, members: Sequence[MemberSpec]) -> MemberSpec | None:
    """``teacher.detector``: null, or one member of kind 'detector'. A detector only changes what
    pixel-reading members see, so with none of them it would change the id but not the maps."""
    if raw is None:
        return None
    spec = _member("detector", raw, "settings: teacher.detector")
    if not any(member_class(m.kind, m.name, "").reads_pixels for m in members):
        raise UserError(
            "settings: teacher.detector: every pose and segmentation member reads annotations, "
            "not pixels, so the detector would change nothing; set teacher.detector to null"
        )
    return spec


def _member(kind: str, entry: Any, where: str) -> MemberSpec:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("member"), str):
        raise UserError(f"{where}: needs 'member: <name>'")
    name = entry["member"]
    cls = member_class(kind, name, where)
    options = {k: v for k, v in entry.items() if k != "member"}
    return MemberSpec(kind, name, cls.resolve_options(options, f"{where} ({name})"))


def config_weights(path: Path, names: Sequence[str]) -> dict[str, WeightsSpec]:
    """Entries ``names`` of the ``weights`` section of a workflow config file (paths relative to
    the directory it is run from, as Snakemake reads them)."""
    try:
        section = yaml.safe_load(path.read_text(encoding="utf-8")).get("weights") or {}
    except (OSError, AttributeError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: not a readable config with a weights section ({exc})") from None
    if not names:
        raise UserError(f"name the entries of {path} → weights to fetch, e.g. isnet_general")
    unknown = [name for name in names if name not in section]
    if unknown:
        raise UserError(
            f"{path} → weights has no entry {unknown[0]!r} (entries: {', '.join(sorted(section))})"
        )
    return _weights({name: section[name] for name in names})


def _weights(raw: Any) -> dict[str, WeightsSpec]:
    if not isinstance(raw, Mapping):
        raise UserError("settings: 'weights' must map names to {path, sha256, url}")
    out = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("sha256"), str):
            raise UserError(
                f"weights '{name}' has no sha256: add `sha256: <sha256sum of the file>` to it in "
                "config.yaml, so that the teacher id changes when the weights do"
            )
        out[name] = WeightsSpec(
            path=str(entry.get("path", "")),
            sha256=entry["sha256"],
            url=str(entry.get("url", "")),
            imgly_resource=str(entry.get("imgly_resource", "")),
        )
    return out
