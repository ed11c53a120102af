"""The ``superanimal`` pose member: DeepLabCut's SuperAnimal-Quadruped inference without DeepLabCut.

The expected keypoints in ``fixtures/superanimal_dlc_reference.json`` were produced by
DeepLabCut 3.0.0's own code (its model builder, top-down crop, predictor and mapping back to the
image) on weights and images generated from the recipe stored in the same file. The test
regenerates both from the recipe (numpy's PCG64 uniform stream, stable across versions), writes
the weights as a DeepLabCut snapshot and checks the member against DeepLabCut's numbers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from pseudomasks.errors import UserError
from pseudomasks.keypoint_schemas import AP10K, SUPERANIMAL_QUADRUPED
from pseudomasks.members.base import MemberContext, Sample, WeightsSpec
from pseudomasks.members.hrnet_heatmap import (
    BACKBONE_PREFIX,
    HEAD_PREFIX,
    HeatmapNetwork,
    load_network,
    predict_keypoints,
)
from pseudomasks.members.registry import member_class
from pseudomasks.species import parse_species

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = json.loads(
    (Path(__file__).parent / "fixtures/superanimal_dlc_reference.json").read_text()
)

QUADRUPED = {  # a species on SuperAnimal's own 39-keypoint schema
    "name": "quadruped",
    "keypoint_schema": "superanimal_quadruped",
    "parts": [
        {"name": "head", "keypoints": ["nose", "left_eye", "right_eye"]},
        {"name": "body", "keypoints": ["back_middle", "belly_bottom"]},
    ],
}
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
NYALA = CONFIG["species"]["nyala"] | {"name": "nyala"}


def reference_state_dict() -> dict[str, torch.Tensor]:
    """The fixture's weights, in DeepLabCut's key names, from the recipe in the fixture."""
    recipe = REFERENCE["recipe"]["weights"]
    backbone = HeatmapNetwork(num_keypoints=39).backbone.state_dict()
    shapes = {BACKBONE_PREFIX + k: v.shape for k, v in backbone.items()}
    shapes |= {f"{HEAD_PREFIX}weight": (32, 39, 1, 1), f"{HEAD_PREFIX}bias": (39,)}
    batchnorms = {k.removesuffix(".running_var") for k in shapes if k.endswith(".running_var")}
    rng = np.random.Generator(np.random.PCG64(recipe["seed"]))
    state = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        module, leaf = key.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        u = rng.random(int(np.prod(shape, dtype=np.int64)))
        signed = 2.0 * u - 1.0
        if key == f"{HEAD_PREFIX}weight":
            value = signed * (recipe["head_scale"] * np.sqrt(3.0 / 32))
        elif key == f"{HEAD_PREFIX}bias":
            value = recipe["head_bias_base"] + recipe["head_bias_amp"] * signed
        elif module in batchnorms and leaf == "weight":
            value = recipe["bn_weight_base"] + recipe["bn_weight_amp"] * signed
        elif module in batchnorms and leaf == "bias":
            value = recipe["bn_bias_amp"] * signed
        elif module in batchnorms and leaf == "running_mean":
            value = recipe["bn_mean_amp"] * signed
        elif module in batchnorms and leaf == "running_var":
            value = recipe["bn_var_lo"] + (recipe["bn_var_hi"] - recipe["bn_var_lo"]) * u
        else:  # convolution: every filter sums to zero ("zero_sum")
            fan_in = int(np.prod(shape[1:]))
            u = u.reshape(shape[0], fan_in)
            value = (u - np.roll(u, 1, axis=1)) * (recipe["gain"] * np.sqrt(6.0 / fan_in))
        state[key] = torch.from_numpy(value.astype(np.float32).reshape(shape))
    return state


def reference_images() -> dict[str, np.ndarray]:
    recipe = REFERENCE["recipe"]["images"]
    rng = np.random.Generator(np.random.PCG64(recipe["seed"]))
    images = {}
    for name in recipe["order"]:
        noise = rng.integers(0, 256, size=(*recipe["sizes_hw"][name], 3), dtype=np.uint8)
        image = noise // np.uint8(recipe["noise_div"]) + np.uint8(recipe["noise_offset"])
        for y0, y1, x0, x1, *rgb in recipe["rectangles"][name]:
            image[y0:y1, x0:x1] = rgb
        images[name] = image
    return images


def save_snapshot(state: dict[str, torch.Tensor], path: Path) -> Path:
    """As DeepLabCut 3 writes a training snapshot (the optimiser state left out)."""
    torch.save({"metadata": {"epoch": 200}, "model": state, "scheduler": {}}, path)
    return path


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    return save_snapshot(reference_state_dict(), tmp_path_factory.mktemp("dlc") / "snapshot.pt")


@pytest.fixture()
def one_thread():
    """DeepLabCut's reference ran on one thread; so do the comparisons (x, y are exact)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_recipe_regenerates_the_reference_inputs():
    for name, image in reference_images().items():
        digest = hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()
        assert digest == REFERENCE["images_sha256"][name]
    state = reference_state_dict()
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode() + state[key].numpy().tobytes())
    assert digest.hexdigest() == REFERENCE["weights_sha256"]


def test_keypoints_match_deeplabcut_on_every_reference_case(snapshot, one_thread):
    """Whole-image boxes of a landscape and a portrait image (padding above and below, or left
    and right) and a box reaching outside the image (rounding half to even, black padding)."""
    network = load_network(snapshot)
    images = reference_images()
    for case in REFERENCE["cases"]:
        (got,) = predict_keypoints(network, [images[case["image"]]], [case["bbox_xywh"]], 256)
        expected = np.array(case["keypoints"])
        np.testing.assert_allclose(
            got[:, :2], expected[:, :2], atol=REFERENCE["tolerances"]["xy_px"]
        )
        np.testing.assert_allclose(got[:, 2], expected[:, 2], atol=REFERENCE["tolerances"]["score"])
    scores = np.concatenate([np.array(c["keypoints"])[:, 2] for c in REFERENCE["cases"]])
    assert ((scores > 0) & (scores < 1)).sum() > 50 and (scores == 1).any()  # clipping is tested


def member(species: dict, path: Path, **options):
    weights = {"sa": WeightsSpec(str(path), sha256="", url="")}
    context = MemberContext(parse_species(species), confidence=0.3, device="cpu", weights=weights)
    cls = member_class("pose", "superanimal", "t")
    return cls(cls.resolve_options({"weights": "sa", **options}, "t"), context)


def test_the_member_gives_deeplabcuts_keypoints_for_whole_images(snapshot, one_thread):
    """A re-ID image shows one animal: the member's box is the whole image, batched."""
    images = reference_images()
    whole = {
        c["image"]: np.array(c["keypoints"])
        for c in REFERENCE["cases"]
        if c["bbox_xywh"][:2] == [0.0, 0.0]
    }
    assert set(whole) == {"a", "b"}
    samples = [Sample(name, images[name], {}, Path(".")) for name in ("a", "b")]
    got = member(QUADRUPED, snapshot, batch_size=2).predict(samples)
    for sample, keypoints in zip(samples, got, strict=True):
        np.testing.assert_allclose(keypoints, whole[sample.image_id], atol=1e-3)

    # A map into another schema: each SuperAnimal keypoint with an AP-10K counterpart lands there.
    ap10k_to_superanimal = shipped_member("mmpose")["keypoint_map"]
    mapping = [
        AP10K[ap10k_to_superanimal.index(name)] if name in ap10k_to_superanimal else None
        for name in SUPERANIMAL_QUADRUPED
    ]
    (mapped,) = member(NYALA, snapshot, keypoint_map=mapping).predict(samples[:1])
    assert sum(n is not None for n in mapping) == 14
    for index, name in enumerate(mapping):
        if name is not None:
            np.testing.assert_allclose(mapped[AP10K.index(name)], whole["a"][index], atol=1e-3)
    assert not mapped[[AP10K.index(n) for n in ("left_eye", "right_eye", "nose")]].any()


def test_a_bare_state_dict_loads_like_a_snapshot(tmp_path, snapshot):
    bare = tmp_path / "bare.pt"
    torch.save(torch.load(snapshot, weights_only=True)["model"], bare)
    image = reference_images()["a"]
    box = [(0.0, 0.0, 320.0, 240.0)]
    np.testing.assert_array_equal(
        predict_keypoints(load_network(bare), [image], box, 256)[0],
        predict_keypoints(load_network(snapshot), [image], box, 256)[0],
    )


def test_unusable_weights_are_one_clear_error(tmp_path, snapshot):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(UserError, match="is not a torch checkpoint readable with weights_only"):
        load_network(text)

    state = torch.load(snapshot, weights_only=True)["model"]
    locref = dict(state, **{"heads.bodypart.locref_head.weight": torch.zeros(78, 32, 1, 1)})
    with pytest.raises(UserError, match="no location refinement are supported"):
        load_network(save_snapshot(locref, tmp_path / "locref.pt"))

    head_only = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    with pytest.raises(UserError, match="does not fit HRNet-w32 .*Missing key"):
        load_network(save_snapshot(head_only, tmp_path / "head_only.pt"))

    no_head = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    with pytest.raises(UserError, match="is not a DeepLabCut 3 HRNet-w32 heatmap snapshot"):
        load_network(save_snapshot(no_head, tmp_path / "no_head.pt"))

    with pytest.raises(UserError, match="the model has 39 keypoints, species 'nyala' has 17"):
        member(NYALA, snapshot)
    with pytest.raises(UserError, match=r"t.crop_size: must be a multiple of 32"):
        member(QUADRUPED, snapshot, crop_size=200)


def shipped_member(name: str) -> dict:
    (entry,) = [m for m in CONFIG["teachers"]["superanimal_ap10k"]["pose"] if m["member"] == name]
    return entry


def test_the_authors_teacher_takes_each_keypoint_from_one_model(snapshot, tmp_path):
    """The shipped superanimal_ap10k teacher on random weights of its real architectures
    (SuperAnimal's HRNet-w32, mmpose's AP-10K HRNet-w48): as in the authors' mask generation,
    the 14 mapped keypoints are AP-10K's whatever its score, the others SuperAnimal's, the
    antlers dropped; the map is fused from exactly that at threshold 0.5."""
    import mmpose
    from mmpose.apis import init_model

    from pseudomasks.fusion import fuse_part_map
    from pseudomasks.settings import parse_settings
    from pseudomasks.teacher import Teacher

    ap10k = shipped_member("mmpose")
    torch.manual_seed(0)
    configs = Path(mmpose.__file__).parent / ".mim" / "configs"
    hrnet = init_model(str(configs / ap10k["config"]), None, "cpu")
    torch.save({"state_dict": hrnet.state_dict()}, tmp_path / "w48.pth")
    weights = {
        "ap10k_hrnet_w48": {"path": str(tmp_path / "w48.pth"), "sha256": "", "url": ""},
        "superanimal_quadruped_hrnet_w32": {"path": str(snapshot), "sha256": "", "url": ""},
    }
    image = reference_images()["a"]
    mask = np.zeros(image.shape[:2], bool)
    mask[40:200, 30:290] = True
    cv2.imwrite(str(tmp_path / "sil.png"), mask.astype(np.uint8) * 255)
    sample = Sample("a", image, {"silhouette": "sil.png"}, tmp_path)
    # The annotated silhouette instead of RMBG-2.0: a foreground that does not depend on the pose.
    teacher = CONFIG["teachers"]["superanimal_ap10k"] | {
        "segmentation": [{"member": "annotations"}]
    }
    species = CONFIG["species"]["quadruped_superanimal"] | {"name": "quadruped_superanimal"}
    settings = parse_settings({"teacher": teacher, "species": species, "weights": weights})
    (result,) = Teacher(settings).process([sample])

    context = MemberContext(settings.species, 0.5, "cpu", settings.weights)
    ap10k_cls, superanimal_cls = (member_class("pose", n, "t") for n in ("mmpose", "superanimal"))
    options = {k: v for k, v in ap10k.items() if k != "member"}
    (from_ap10k,) = ap10k_cls(ap10k_cls.resolve_options(options, "t"), context).predict([sample])
    options = {"weights": "superanimal_quadruped_hrnet_w32"}
    (from_superanimal,) = superanimal_cls(
        superanimal_cls.resolve_options(options, "t"), context
    ).predict([sample])
    replaced = [SUPERANIMAL_QUADRUPED.index(n) for n in ap10k["keypoint_map"] if n is not None]
    antlers = [i for i, n in enumerate(SUPERANIMAL_QUADRUPED) if "antler" in n]
    expected = from_superanimal.copy()
    expected[replaced] = from_ap10k[replaced]
    expected[antlers] = 0
    assert len(replaced) == 14 and len(antlers) == 4
    assert (from_ap10k[replaced, 2] < 0.5).any()  # taken even where AP-10K is unsure
    assert settings.confidence == 0.5
    np.testing.assert_array_equal(
        result.part_map.labels, fuse_part_map(expected, mask, settings.species, 0.5, 64).labels
    )
    assert len(np.unique(result.part_map.labels)) > 2  # the random models place several parts


def test_the_shipped_maps_cover_superanimals_keypoints_once():
    replaced = [n for n in shipped_member("mmpose")["keypoint_map"] if n is not None]
    kept = shipped_member("superanimal")["keypoints"]
    antlers = [n for n in SUPERANIMAL_QUADRUPED if "antler" in n]
    assert sorted(replaced + kept + antlers) == sorted(SUPERANIMAL_QUADRUPED)
    assert list(SUPERANIMAL_QUADRUPED) == REFERENCE["bodyparts"]  # DeepLabCut's output order
