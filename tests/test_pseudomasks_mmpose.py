"""The ``mmpose`` pose member, the shared pose option ``keypoints`` and ``teacher.pose_combine``.

The mmpose tests run the AP-10K HRNet-w32 config shipped with mmpose, random-initialised and
saved as a weights file, through the member and compare it with mmpose's own
``inference_topdown`` on the same model. They fail (never skip) without mmpose: CI installs it
with ``tools/install_mmpose.sh``. The ``keypoints`` restriction and the combination rules are
checked on hand-made arrays and against a brute-force reference, without mmpose.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from random_yolo import save_random_yolo_models
from test_pseudomasks_detector import SPECIES as TOY
from test_pseudomasks_settings import changed, tiger_settings

from pseudomasks.combine import combine_keypoints, contributed_keypoints, restrict_keypoints
from pseudomasks.errors import UserError
from pseudomasks.fusion import fuse_part_map
from pseudomasks.keypoint_schemas import AP10K
from pseudomasks.members.base import MemberContext, Sample, WeightsSpec
from pseudomasks.members.mmpose_pose import MmposePose
from pseudomasks.members.registry import member_class
from pseudomasks.members.ultralytics_pose import UltralyticsPose
from pseudomasks.settings import parse_settings, teacher_id
from pseudomasks.species import parse_species
from pseudomasks.teacher import Teacher

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "animal_2d_keypoint/topdown_heatmap/ap10k/td-hm_hrnet-w32_8xb64-210e_ap10k-256x256.py"
ANIMAL = {
    "name": "animal",
    "keypoint_schema": "ap10k",
    "parts": [
        {"name": "head", "keypoints": ["left_eye", "right_eye", "nose"]},
        {"name": "body", "keypoints": ["neck", "root_of_tail"]},
    ],
}


def context(species: dict, weights: dict[str, WeightsSpec]) -> MemberContext:
    return MemberContext(parse_species(species), confidence=0.3, device="cpu", weights=weights)


def images() -> list[np.ndarray]:
    """Three small random RGB images of different shapes (the model sees 256×256 anyway)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (*s, 3), dtype=np.uint8) for s in [(48, 64), (70, 40), (32, 32)]]


def samples() -> list[Sample]:
    return [Sample(f"img{i}", im, {}, Path(".")) for i, im in enumerate(images())]


# ---------------------------------------------------------------------------------------------
# keypoints: what a pose member contributes (no mmpose)
# ---------------------------------------------------------------------------------------------


def test_keypoints_restriction_zeroes_what_a_member_does_not_contribute():
    species = parse_species(TOY)
    mask = contributed_keypoints(["c", "a"], species, "w")
    np.testing.assert_array_equal(mask, [True, False, True])
    np.testing.assert_array_equal(contributed_keypoints(None, species, "w"), [True] * 3)
    kps = np.array([[1.0, 2.0, 0.9], [3.0, 4.0, 0.8], [5.0, 6.0, 0.7]])
    np.testing.assert_array_equal(
        restrict_keypoints(kps, mask), [[1, 2, 0.9], [0, 0, 0], [5, 6, 0.7]]
    )
    assert kps[1, 2] == 0.8  # the member's own array is left alone
    assert restrict_keypoints(None, mask) is None
    with pytest.raises(UserError, match=r"^w.keypoints: 'z' is not a keypoint of species 'toy'"):
        contributed_keypoints(["a", "z"], species, "w")


def test_keypoints_is_an_option_of_every_pose_member_only():
    for name in ("annotations", "ultralytics_pose", "mmpose", "superanimal"):
        cls = member_class("pose", name, "w")
        options = {"weights": "w"} if "weights" in cls.DEFAULTS else {}
        assert cls.resolve_options(options, "p")["keypoints"] is None
        assert cls.resolve_options(options | {"keypoints": ["a"]}, "p")["keypoints"] == ["a"]
        for bad in ([], ["a", "a"], "a", [1]):
            with pytest.raises(UserError, match=r"p.keypoints: must be a non-empty list"):
                cls.resolve_options(options | {"keypoints": bad}, "p")
    with pytest.raises(UserError, match="unknown option 'keypoints'"):
        member_class("segmentation", "grabcut", "w").resolve_options({"keypoints": ["a"]}, "s")


# ---------------------------------------------------------------------------------------------
# pose_combine (no mmpose)
# ---------------------------------------------------------------------------------------------


def test_order_takes_the_first_member_above_the_threshold():
    first = np.array([[1, 1, 0.4], [2, 2, 0.2], [3, 3, 0.0], [4, 4, np.nan]])
    second = np.array([[5, 5, 0.9], [6, 6, 0.3], [7, 7, 0.1], [8, 8, 0.6]])
    third = np.array([[9, 9, 0.5], [10, 10, 0.8], [11, 11, 0.2], [12, 12, 0.7]])
    order = combine_keypoints([first, None, second, third], "order", 0.3)
    # 0: first is sure (0.4 >= 0.3) though less than the others; 1: first unsure → second;
    # 2: nobody is sure → the highest v, third's 0.2; 3: NaN is never sure → second
    np.testing.assert_array_equal(order, [[1, 1, 0.4], [6, 6, 0.3], [11, 11, 0.2], [8, 8, 0.6]])
    confidence = combine_keypoints([first, None, second, third], "confidence", 0.3)
    np.testing.assert_array_equal(
        confidence, [[5, 5, 0.9], [10, 10, 0.8], [11, 11, 0.2], [12, 12, 0.7]]
    )
    assert combine_keypoints([None], "order", 0.3) is None
    with pytest.raises(ValueError, match="unknown pose combine rule 'vote'"):
        combine_keypoints([first], "vote", 0.3)


def brute_force(predictions: list[np.ndarray], rule: str, threshold: float) -> np.ndarray:
    """Keypoint by keypoint with loops: the first sure member (order), else the first member
    with the highest v (NaN counting as lowest)."""
    out = []
    for k in range(len(predictions[0])):
        v = [-np.inf if np.isnan(p[k, 2]) else p[k, 2] for p in predictions]
        chosen = v.index(max(v))
        if rule == "order":
            chosen = next((i for i, vi in enumerate(v) if vi >= threshold), chosen)
        out.append(predictions[chosen][k])
    return np.array(out)


values = st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.9, np.nan])


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 5)), elements=values),
    st.sampled_from(["order", "confidence"]),
    st.sampled_from([0.0, 0.3, 0.5]),
)
def test_combination_matches_brute_force(v, rule, threshold):
    members, keypoints = v.shape
    predictions = [
        np.column_stack([np.full(keypoints, m), np.arange(keypoints), v[m]]) for m in range(members)
    ]
    np.testing.assert_array_equal(
        combine_keypoints(predictions, rule, threshold), brute_force(predictions, rule, threshold)
    )


@pytest.fixture(scope="module")
def pose_weights(tmp_path_factory) -> dict[str, dict[str, str]]:
    """A random yolo11n-pose with the toy species' 3 keypoints, as a settings weights entry."""
    path = save_random_yolo_models(tmp_path_factory.mktemp("yolo"))["pose"]
    return {"pose": {"path": str(path), "sha256": "", "url": ""}}


def test_teacher_restricts_members_then_combines_in_order(pose_weights, tmp_path):
    """A random pose model restricted to 'a', listed before the annotations: the map is fused
    from the keypoints the rules pick out of the two members' own outputs."""
    image = np.random.default_rng(1).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[10:50, 10:70] = True
    cv2.imwrite(str(tmp_path / "sil.png"), mask.astype(np.uint8) * 255)
    annotated = np.array([[15, 20, 0.9], [60, 40, 0.2], [40, 30, 0.8]])
    row = {"keypoints": json.dumps(annotated.ravel().tolist()), "silhouette": "sil.png"}
    sample = Sample("x", image, row, tmp_path)
    model = {"weights": "pose", "confidence": 0.0, "imgsz": 64}
    teacher = {
        "pose": [
            {"member": "ultralytics_pose", "keypoints": ["a"]} | model,
            {"member": "annotations"},
        ],
        "segmentation": [{"member": "annotations"}],
        "pose_combine": "order",
        "confidence": 0.05,
    }
    doc = {"teacher": teacher, "species": TOY, "weights": pose_weights}
    (result,) = Teacher(parse_settings(doc)).process([sample])

    species = parse_species(TOY)
    ctx = MemberContext(species, 0.05, "cpu", {"pose": WeightsSpec(**pose_weights["pose"])})
    (predicted,) = UltralyticsPose(UltralyticsPose.resolve_options(model, ""), ctx).predict(
        [sample]
    )
    # the random model is sure enough of 'a' (order takes it), less sure than the annotation
    # (confidence would not), and sure of 'b' or 'c' too (without the restriction order would
    # take them)
    assert 0.05 <= predicted[0, 2] < 0.9 and (predicted[1:, 2] >= 0.05).any()
    expected = np.vstack([predicted[0], annotated[1:]])
    np.testing.assert_array_equal(
        result.part_map.labels, fuse_part_map(expected, mask, species, 0.05, 64).labels
    )
    for unrestricted_or_confidence in (
        combine_keypoints([predicted, annotated], "order", 0.05),
        combine_keypoints([restrict_keypoints(predicted, np.array([1, 0, 0], bool)), annotated]),
    ):
        other = fuse_part_map(unrestricted_or_confidence, mask, species, 0.05, 64)
        assert (other.labels != result.part_map.labels).any()


# ---------------------------------------------------------------------------------------------
# Settings, teacher id and the workflow's config schema (no mmpose)
# ---------------------------------------------------------------------------------------------


def document(**teacher: Any) -> dict:
    pose = [{"member": "annotations"}, {"member": "ultralytics_pose", "weights": "sam"}]
    return {
        "teacher": {"pose": pose, "segmentation": [{"member": "annotations"}]} | teacher,
        "species": TOY,
        "weights": {"sam": {"path": "sam.pth", "sha256": "ab" * 32, "url": ""}},
    }


def test_new_settings_enter_the_teacher_id_only_when_not_default():
    base = teacher_id(document())
    assert teacher_id(document(pose_combine="confidence")) == base
    assert teacher_id(document(pose_combine="order")) != base
    spelled = document()
    spelled["teacher"]["pose"][0]["keypoints"] = None
    assert teacher_id(spelled) == base
    restricted = document()
    restricted["teacher"]["pose"][0]["keypoints"] = ["a", "b"]
    assert teacher_id(restricted) != base
    assert parse_settings(document()).pose_combine == "confidence"


def test_teachers_from_before_the_new_settings_keep_their_ids():
    """Ids computed with the code before ``pose_combine`` and ``keypoints`` existed."""
    assert teacher_id(tiger_settings()) == "5fcb1df0fac5"
    two = [{"member": "annotations"}, {"member": "ultralytics_pose", "weights": "sam"}]
    assert teacher_id(changed("teacher.pose", two)) == "a5a213616b64"


def test_new_settings_errors_name_the_key():
    with pytest.raises(UserError, match="teacher.pose_combine 'first' unknown; use one of: conf"):
        parse_settings(document(pose_combine="first"))
    doc = document()
    doc["teacher"]["pose"][1]["keypoints"] = ["a", "nose"]
    with pytest.raises(
        UserError,
        match=r"teacher.pose\[1\] \(ultralytics_pose\).keypoints: 'nose' is not a keypoint",
    ):
        parse_settings(doc)


def test_config_schema_knows_the_new_settings():
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    teacher = jsonschema.Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/teacher"})
    good = {
        "pose": [{"member": "mmpose", "weights": "ap10k", "keypoints": ["nose"]}],
        "segmentation": [{"member": "grabcut"}],
        "pose_combine": "order",
    }
    teacher.validate(good)
    teacher.validate(good | {"pose": [{"member": "mmpose", "keypoints": None}]})
    for bad in (
        good | {"pose_combine": "first"},
        good | {"pose": [{"member": "mmpose", "keypoints": []}]},
        good | {"pose": [{"member": "mmpose", "keypoints": ["nose", "nose"]}]},
        good | {"pose": [{"keypoints": ["nose"]}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            teacher.validate(bad)


# ---------------------------------------------------------------------------------------------
# The mmpose member: a random AP-10K HRNet-w32 against mmpose's own inference_topdown
# ---------------------------------------------------------------------------------------------


def reference_model(flip_test: bool, state: dict[str, torch.Tensor]) -> Any:
    """The shipped config built by mmpose's own ``init_model``, with the same weights."""
    import mmpose
    from mmpose.apis import init_model

    config = Path(mmpose.__file__).parent / ".mim" / "configs" / CONFIG
    model = init_model(
        str(config), device="cpu", cfg_options={"model.test_cfg.flip_test": flip_test}
    )
    model.load_state_dict(state)
    return model


def reference(model: Any, image: np.ndarray) -> np.ndarray:
    """17×3 ``[x, y, score]`` from ``inference_topdown`` with the whole image as the box."""
    from mmpose.apis import inference_topdown

    h, w = image.shape[:2]
    (result,) = inference_topdown(model, image[:, :, ::-1].copy(), bboxes=np.array([[0, 0, w, h]]))
    kps = result.pred_instances
    return np.column_stack([kps.keypoints[0], kps.keypoint_scores[0]]).astype(np.float64)


@pytest.fixture(scope="module")
def hrnet(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A random-initialised AP-10K HRNet-w32 saved as an mmpose checkpoint, its weights entry,
    and mmpose's own predictions for :func:`images` (without and with flip test)."""
    from mmpose.apis import init_model  # no mmpose → this fixture, so every mmpose test, fails

    torch.manual_seed(0)
    import mmpose

    model = init_model(str(Path(mmpose.__file__).parent / ".mim" / "configs" / CONFIG), None, "cpu")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("mmpose") / "hrnet.pth"
    torch.save({"state_dict": state}, path)
    plain, flipped = reference_model(False, state), reference_model(True, state)
    yield {
        "weights": {"hrnet": WeightsSpec(str(path), "", "")},
        "plain": [reference(plain, im) for im in images()],
        "flipped": [reference(flipped, im) for im in images()[:1]],
    }


def mmpose_member(hrnet: dict, species: dict = ANIMAL, **options: Any) -> MmposePose:
    resolved = MmposePose.resolve_options({"weights": "hrnet"} | options, "mmpose")
    return MmposePose(resolved, context(species, hrnet["weights"]))


def test_mmpose_member_equals_inference_topdown_batched_or_not(hrnet):
    """Batches of 2 over 3 images (2 + 1) give mmpose's per-image answer, in the species'
    (here AP-10K's own) order, scores clipped to [0, 1]."""
    member = mmpose_member(hrnet, batch_size=2)
    out = member.predict(samples())
    assert member.predict([]) == []
    assert len(out) == 3
    for kps, ref, image in zip(out, hrnet["plain"], images(), strict=True):
        assert kps.shape == (len(AP10K), 3) and kps.dtype == np.float64
        np.testing.assert_allclose(kps[:, :2], ref[:, :2], atol=1e-3)
        np.testing.assert_allclose(kps[:, 2], np.clip(ref[:, 2], 0, 1), atol=1e-5)
        h, w = image.shape[:2]
        assert ((kps[:, 0] > -w) & (kps[:, 0] < 2 * w)).all()  # within the padded box
    one_by_one = [mmpose_member(hrnet, batch_size=1).predict([s])[0] for s in samples()[:2]]
    for single, batched in zip(one_by_one, out, strict=False):
        np.testing.assert_allclose(single, batched, atol=1e-4)
    assert next(member.model.parameters()).device.type == "cpu"


def test_mmpose_keypoint_map_reorders_the_model_output(hrnet):
    """Model keypoint 2 (nose) → 'a', 0 (left_eye) → 'c', the rest dropped; 'b' not given."""
    names: list[str | None] = [None] * len(AP10K)
    names[2], names[0] = "a", "c"
    member = mmpose_member(hrnet, species=TOY, keypoint_map=names)
    for kps, ref in zip(member.predict(samples()[:2]), hrnet["plain"], strict=False):
        assert kps.shape == (3, 3)
        np.testing.assert_allclose(kps[0, :2], ref[2, :2], atol=1e-3)
        np.testing.assert_allclose(kps[2, :2], ref[0, :2], atol=1e-3)
        np.testing.assert_allclose(kps[[0, 2], 2], np.clip(ref[[2, 0], 2], 0, 1), atol=1e-5)
        np.testing.assert_array_equal(kps[1], [0, 0, 0])


def test_mmpose_flip_test_is_mmpose_own(hrnet):
    (flipped,) = mmpose_member(hrnet, flip_test=True).predict(samples()[:1])
    ref = hrnet["flipped"][0]
    assert flipped.shape == (len(AP10K), 3)
    np.testing.assert_allclose(flipped[:, :2], ref[:, :2], atol=1e-3)
    np.testing.assert_allclose(flipped[:, 2], np.clip(ref[:, 2], 0, 1), atol=1e-5)
    assert not np.allclose(flipped, mmpose_member(hrnet).predict(samples()[:1])[0])


def test_mmpose_user_errors(hrnet, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="model has 17 keypoints, species 'toy' has 3; give"):
        mmpose_member(hrnet, species=TOY)
    with pytest.raises(UserError, match=r"mmpose.config: animal/nope.py not found \(looked for "):
        mmpose_member(hrnet, config="animal/nope.py")
    with pytest.raises(UserError, match=f"mmpose.config: {tmp_path}/c.py not found"):
        mmpose_member(hrnet, config=str(tmp_path / "c.py"))
    bottom_up = "body_2d_keypoint/dekr/coco/dekr_hrnet-w32_8xb10-140e_coco-512x512.py"
    with pytest.raises(UserError, match="builds a BottomupPoseEstimator; this member needs a top"):
        mmpose_member(hrnet, config=bottom_up)
    missing = {"hrnet": WeightsSpec(str(tmp_path / "w.pth"), "", "https://example.org/w.pth")}
    with pytest.raises(UserError, match=r"^mmpose: weights file .*w\.pth \('hrnet'\) not found"):
        mmpose_member({"weights": missing})
    with pytest.raises(UserError, match=r"mmpose.weights: name an entry"):
        MmposePose.resolve_options({}, "mmpose")
    with pytest.raises(UserError, match=r"mmpose.batch_size: must be >= 1"):
        MmposePose.resolve_options({"weights": "w", "batch_size": 0}, "mmpose")
    monkeypatch.setitem(sys.modules, "mmpose.apis", None)
    with pytest.raises(UserError, match=r"cannot import mmpose.apis .*run make \(or tools/inst"):
        mmpose_member(hrnet)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"state_dict": {"x": torch.zeros(1)}}, r"does not fit config .*Missing key"),
        ({"meta": {"best": np.float64(0.7)}}, r"also pickles numpy\S*scalar, which weights_only"),
        (b"not a checkpoint", "is not a torch checkpoint"),
        ([torch.zeros(1)], "holds no state dict"),
    ],
)
def test_mmpose_unusable_weights_files(hrnet, tmp_path, content, message):
    path = tmp_path / "w.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(UserError, match=message):
        mmpose_member({"weights": {"hrnet": WeightsSpec(str(path), "", "")}})


def test_mmpose_member_module_imports_without_its_libraries():
    """Settings validation imports the class: it must not load torch, mmcv or mmpose."""
    code = (
        "import sys\n"
        "import pseudomasks.members.mmpose_pose\n"
        "heavy = {'torch', 'mmcv', 'mmengine', 'mmpose', 'mmdet'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
