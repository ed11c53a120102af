"""The species section of the settings: keypoint schema, parts in label order, links, tail.

Parsed once and validated up front so that a typo in config.yaml fails before any image is
read, with a message naming the species and the bad name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.keypoint_schemas import BUILTIN_SCHEMAS, CUSTOM_SCHEMA


@dataclass(frozen=True)
class Species:
    """A species' part layout. Label ``k`` (1..K) is ``parts[k - 1]``; 0 is background."""

    name: str
    keypoint_schema: str
    keypoints: tuple[str, ...]
    parts: tuple[str, ...]
    part_keypoints: tuple[tuple[str, ...], ...]
    links: tuple[tuple[str, str, str | None], ...]  # (a, b, part of the midpoint or None)
    tail: tuple[str, str | None] | None
    front_parts: tuple[str, ...]
    rear_parts: tuple[str, ...]
    keypoint_labels: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = np.zeros(len(self.keypoints), dtype=np.int64)
        index = {name: i for i, name in enumerate(self.keypoints)}
        for label, names in enumerate(self.part_keypoints, start=1):
            for name in names:
                labels[index[name]] = label
        object.__setattr__(self, "keypoint_labels", labels)

    @property
    def num_parts(self) -> int:
        return len(self.parts)

    def keypoint_index(self, name: str) -> int:
        return self.keypoints.index(name)

    def part_label(self, part: str) -> int:
        return self.parts.index(part) + 1

    def to_json(self) -> dict[str, Any]:
        """What of the species changes the maps (the name does not), in a canonical form."""
        return {
            "keypoints": list(self.keypoints),
            "parts": [
                {"name": p, "keypoints": list(k)}
                for p, k in zip(self.parts, self.part_keypoints, strict=True)
            ],
            "links": [list(link[:2]) if link[2] is None else list(link) for link in self.links],
            "tail": list(self.tail) if self.tail else None,
            "orientation": {"front": list(self.front_parts), "rear": list(self.rear_parts)},
        }


def parse_species(doc: Mapping[str, Any]) -> Species:
    """Validate the ``species`` settings section and build a :class:`Species`."""
    if not isinstance(doc, Mapping):
        raise UserError("settings: 'species' must be a mapping with name, keypoint_schema, parts")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise UserError("settings: species.name must be a non-empty string")
    where = f"species '{name}'"
    schema = doc.get("keypoint_schema")
    keypoints = _schema_keypoints(where, schema, doc.get("keypoints"))
    known = set(keypoints)

    def check_keypoint(kp: Any, context: str) -> str:
        if not isinstance(kp, str) or kp not in known:
            raise UserError(
                f"{where}: {context} names keypoint {kp!r}, which is not in keypoint schema "
                f"'{schema}'; use one of: {', '.join(keypoints)}"
            )
        return kp

    raw_parts = doc.get("parts")
    if not isinstance(raw_parts, Sequence) or isinstance(raw_parts, str) or not raw_parts:
        raise UserError(f"{where}: parts must be a non-empty list of {{name, keypoints}} (K >= 1)")
    parts: list[str] = []
    part_keypoints: list[tuple[str, ...]] = []
    owner: dict[str, str] = {}
    for i, part in enumerate(raw_parts):
        if (
            not isinstance(part, Mapping)
            or not isinstance(part.get("name"), str)
            or not part["name"]
        ):
            raise UserError(f"{where}: parts[{i}] needs a non-empty 'name'")
        pname = part["name"]
        if pname in parts:
            raise UserError(f"{where}: part '{pname}' is listed twice; part names must be unique")
        kps = part.get("keypoints") or []
        if isinstance(kps, str) or not isinstance(kps, Sequence):
            raise UserError(f"{where}: part '{pname}' keypoints must be a list of keypoint names")
        for kp in kps:
            check_keypoint(kp, f"part '{pname}'")
            if kp in owner:
                raise UserError(
                    f"{where}: keypoint '{kp}' is in both part '{owner[kp]}' and part '{pname}'; "
                    "a keypoint belongs to at most one part"
                )
            owner[kp] = pname
        parts.append(pname)
        part_keypoints.append(tuple(kps))

    links: list[tuple[str, str, str | None]] = []
    for i, link in enumerate(doc.get("links") or []):
        if isinstance(link, str) or not isinstance(link, Sequence) or len(link) not in (2, 3):
            raise UserError(
                f"{where}: links[{i}] must be [keypoint, keypoint] or [keypoint, keypoint, part]"
            )
        part_of_midpoint = link[2] if len(link) == 3 else None
        if part_of_midpoint is not None and part_of_midpoint not in parts:
            raise UserError(
                f"{where}: links[{i}] names part {part_of_midpoint!r}, which is not one of "
                f"the species' parts ({', '.join(parts)})"
            )
        links.append(
            (check_keypoint(link[0], "a link"), check_keypoint(link[1], "a link"), part_of_midpoint)
        )

    tail = _parse_tail(where, doc.get("tail"), check_keypoint, owner)
    front, rear = _parse_orientation(where, doc.get("orientation"), parts)
    return Species(
        name=name,
        keypoint_schema=str(schema),
        keypoints=keypoints,
        parts=tuple(parts),
        part_keypoints=tuple(part_keypoints),
        links=tuple(links),
        tail=tail,
        front_parts=front,
        rear_parts=rear,
    )


def _schema_keypoints(where: str, schema: Any, custom: Any) -> tuple[str, ...]:
    if schema == CUSTOM_SCHEMA:
        if isinstance(custom, str) or not isinstance(custom, Sequence):
            raise UserError(
                f"{where}: keypoint_schema 'custom' needs species.keypoints, a list of names"
            )
        names = tuple(custom)
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise UserError(f"{where}: species.keypoints must be unique non-empty names")
        return names
    if schema not in BUILTIN_SCHEMAS:
        choices = ", ".join([*BUILTIN_SCHEMAS, CUSTOM_SCHEMA])
        raise UserError(f"{where}: unknown keypoint_schema {schema!r}; use one of: {choices}")
    if custom is not None:
        raise UserError(
            f"{where}: species.keypoints is only read with keypoint_schema 'custom'; "
            f"set it to null for '{schema}'"
        )
    return BUILTIN_SCHEMAS[schema]


def _parse_tail(
    where: str, raw: Any, check_keypoint: Any, owner: Mapping[str, str]
) -> tuple[str, str | None] | None:
    if raw is None:
        return None
    if isinstance(raw, str) or not isinstance(raw, Sequence) or len(raw) not in (1, 2):
        raise UserError(f"{where}: tail must be [start_keypoint, end_keypoint or null]")
    start = check_keypoint(raw[0], "tail")
    if start not in owner:
        raise UserError(
            f"{where}: tail start keypoint '{start}' is in no part; add it to the tail's part"
        )
    end = raw[1] if len(raw) == 2 else None
    return start, None if end is None else check_keypoint(end, "tail")


def _parse_orientation(
    where: str, raw: Any, parts: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if raw is None:
        return (), ()
    if not isinstance(raw, Mapping):
        raise UserError(f"{where}: orientation must be {{front: [parts], rear: [parts]}}")
    sides: list[tuple[str, ...]] = []
    for side in ("front", "rear"):
        names = raw.get(side) or []
        for pname in names:
            if pname not in parts:
                raise UserError(
                    f"{where}: orientation.{side} names part {pname!r}, which is not a part; "
                    f"use one of: {', '.join(parts)}"
                )
        sides.append(tuple(names))
    return sides[0], sides[1]
