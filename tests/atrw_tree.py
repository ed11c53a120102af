"""A miniature ATRW release in the official on-disk formats, drawn with the synthetic species.

train/ + reid_list_train.csv (no header) + reid_keypoints_train.json (ATRW-15 keypoints), and
test/{imgid:06d}.jpg + reid_list_test.csv + gt_test_plain.json with sing/multi queries and
[camera a, camera b, frame] fields, as the release ships them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from reid.datasets.synthetic import AP10K_KEYPOINTS, SyntheticSpec, generate

# ATRW-15 keypoints taken from the synthetic animal's AP-10K points (ears ≈ eyes; the body centre
# is the midpoint of neck and tail root).
ATRW_FROM_AP10K = {
    "left_ear": "left_eye",
    "right_ear": "right_eye",
    "nose": "nose",
    "right_shoulder": "right_shoulder",
    "right_front_paw": "right_front_paw",
    "left_shoulder": "left_shoulder",
    "left_front_paw": "left_front_paw",
    "right_hip": "right_hip",
    "right_knee": "right_knee",
    "right_back_paw": "right_back_paw",
    "left_hip": "left_hip",
    "left_knee": "left_knee",
    "left_back_paw": "left_back_paw",
    "tail": "root_of_tail",
}


def atrw_keypoints(ap10k: list[float]) -> list[float]:
    points = {name: ap10k[3 * i : 3 * i + 3] for i, name in enumerate(AP10K_KEYPOINTS)}
    out: list[float] = []
    for name in ATRW_FROM_AP10K:
        out += points[ATRW_FROM_AP10K[name]]
    neck, tail = points["neck"], points["root_of_tail"]
    out += [(neck[0] + tail[0]) / 2, (neck[1] + tail[1]) / 2, min(neck[2], tail[2])]
    return [round(v, 1) for v in out]


def make_atrw_tree(root: Path, identities: int = 8) -> Path:
    """Write the tree under root/atrw and return that directory."""
    source = root / "synthetic"
    table = generate(
        source,
        SyntheticSpec(
            identities=identities, encounters=2, images_per_encounter=1, test_fraction=0.5
        ),
    )
    atrw = root / "atrw"
    (atrw / "train").mkdir(parents=True)
    (atrw / "test").mkdir()
    train_rows, keypoints, test_names, gt = [], {}, [], []
    for n, row in enumerate(table.itertuples()):
        entity = int(row.identity.removeprefix("id"))
        if row.split == "train":
            name = f"{n:06d}.jpg"
            shutil.copy(source / row.path, atrw / "train" / name)
            train_rows.append(f"{entity},{name}")
            keypoints[name] = atrw_keypoints(json.loads(row.keypoints))
        else:
            imgid = len(test_names)
            name = f"{imgid:06d}.jpg"
            shutil.copy(source / row.path, atrw / "test" / name)
            test_names.append(name)
            camera = int(row.camera.removeprefix("cam"))
            encounter = int(row.encounter.rsplit("_e", 1)[1])
            query = "sing" if imgid % 2 == 0 else "multi"
            gt.append(
                {
                    "imgid": imgid,
                    "entityid": entity,
                    "frame": [camera, 0, 10 * encounter],
                    "query": query,
                }
            )
    (atrw / "reid_list_train.csv").write_text("\n".join(train_rows) + "\n")
    (atrw / "reid_keypoints_train.json").write_text(json.dumps(keypoints))
    (atrw / "reid_list_test.csv").write_text("\n".join(test_names) + "\n")
    (atrw / "gt_test_plain.json").write_text(json.dumps(gt))
    return atrw
