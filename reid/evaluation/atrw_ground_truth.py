"""The official ATRW plain re-ID ground truth (``gt_test_plain.json``) as catalogue-style labels.

The official scorer takes identity, camera and frame from this file rather than from whatever a
catalogue holds, so the ``atrw`` protocol reads it when given. Entries become rows keyed by the
catalogue's test image id ``test/{imgid:06d}`` with the columns the catalogue would carry:
identity (entity id), camera (``"{cam_a}_{cam_b}"``), frame and group (``sing``/``multi``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reid.errors import UserError

ATRW_GROUPS = ("sing", "multi")


def atrw_test_image_id(imgid: int) -> str:
    """Catalogue image id of an ATRW test image."""
    return f"test/{imgid:06d}"


def load_atrw_ground_truth(path: Path) -> pd.DataFrame:
    """Labels indexed by image id, columns identity, camera, frame (int) and group."""
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read ATRW ground truth {path}: {error}") from None
    if not isinstance(entries, list):
        raise UserError(f"ATRW ground truth {path} is not a JSON list; pass gt_test_plain.json")
    rows = [_label_row(path, number, entry) for number, entry in enumerate(entries)]
    labels = pd.DataFrame(rows, columns=["image_id", "identity", "camera", "frame", "group"])
    duplicated = labels["image_id"][labels["image_id"].duplicated()]
    if len(duplicated):
        raise UserError(f"ATRW ground truth {path} lists image {duplicated.iloc[0]} twice")
    return labels.set_index("image_id")


def _label_row(path: Path, number: int, entry: object) -> tuple[str, str, str, int, str]:
    fields = _entry_fields(entry)
    if fields is None:
        raise UserError(
            f"ATRW ground truth {path}: entry {number} is not "
            '{"imgid": int, "entityid": int, "frame": [int, int, int], "query": "sing"|"multi"}'
        )
    imgid, entity, cam_a, cam_b, frame, group = fields
    return atrw_test_image_id(imgid), str(entity), f"{cam_a}_{cam_b}", frame, group


def _entry_fields(entry: object) -> tuple[int, int, int, int, int, str] | None:
    """The fields of one well-formed entry, or None."""
    if not isinstance(entry, dict):
        return None
    frame = entry.get("frame")
    if not isinstance(frame, list) or len(frame) != 3:
        return None
    fields = (entry.get("imgid"), entry.get("entityid"), *frame)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in fields):
        return None
    if entry.get("query") not in ATRW_GROUPS:
        return None
    return (*fields, entry["query"])
