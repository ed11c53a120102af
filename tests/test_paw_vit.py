"""PAW-ViT against the paper's equations, on small random-initialised models."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import ResPostBlock

from reid.errors import UserError
from reid.losses import OrientationLoss, SegmentationLoss
from reid.models import ModelSpec, PawViT, build_model

K = 3
SMALL = dict(img_size=64, embed_dim=32, depth=2, num_heads=4)  # 4×4 patch grid


def small_paw(**kwargs) -> PawViT:
    torch.manual_seed(0)
    return timm.create_model(
        "paw_vit_tiny_patch16_256", num_parts=K, num_classes=7, **{**SMALL, **kwargs}
    )


def test_registered_in_timm():
    names = timm.list_models("paw_vit_*")
    assert {
        "paw_vit_tiny_patch16_256",
        "paw_vit_small_patch16_256",
        "paw_vit_base_patch16_256",
    } <= set(names)


def test_tokens_replace_cls():
    model = small_paw()
    assert model.cls_token is None
    assert model.reg_token.shape == (1, K + 1, 32)
    assert model.pos_embed.shape == (1, K + 1 + 16, 32)  # every prefix token has a position
    assert model.mask_size == 16  # img_size / 4


def test_atm_maps_follow_the_paper_equations():
    model = small_paw().train()
    x = torch.randn(2, 3, 64, 64)
    captured = {}
    model.norm.register_forward_hook(lambda m, i, o: captured.setdefault("tokens", o))
    out = model(x)
    tokens = captured["tokens"]
    parts, patches = tokens[:, : K + 1], tokens[:, K + 1 :]
    atm = model.atm
    heads, c = 4, 32
    d = c // heads
    expected = torch.zeros(2, K + 1, 4, 4)
    for b in range(2):
        for t in range(K + 1):
            per_head = []
            for h in range(heads):
                wq = atm.q.weight[h * d : (h + 1) * d]
                bq = atm.q.bias[h * d : (h + 1) * d]
                wk = atm.k.weight[h * d : (h + 1) * d]
                bk = atm.k.bias[h * d : (h + 1) * d]
                q = wq @ parts[b, t] + bq
                sims = torch.stack(
                    [(q @ (wk @ patches[b, n] + bk)) / (c / heads) ** 0.5 for n in range(16)]
                )
                per_head.append(torch.sigmoid(sims))
            expected[b, t] = torch.stack(per_head).mean(0).view(4, 4)  # row-major patch grid
    expected = F.interpolate(expected, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out.atm_maps, expected, rtol=1e-4, atol=1e-5)
    assert out.atm_maps.shape == (2, K + 1, 16, 16)
    assert out.atm_logits.shape == (2, K + 1, 16, 16)


def test_background_token_never_reaches_the_descriptor():
    """In eval the final norm sees the K part tokens only: the background token's (and the
    patches') final outputs are never computed; a part token's output does reach the descriptor."""
    model = small_paw().eval()
    x = torch.randn(2, 3, 64, 64)
    reference = model(x)
    normed = []
    handle = model.norm.register_forward_hook(lambda m, i, o: normed.append(o.shape))
    torch.testing.assert_close(model(x), reference)
    assert normed == [torch.Size([2, K, 32])]
    handle.remove()

    def scramble_part(module, inputs, output):
        output = output.clone()
        output[:, 0] = torch.randn_like(output[:, 0])
        return output

    model.norm.register_forward_hook(scramble_part)
    assert not torch.allclose(model(x), reference)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"qkv_bias": False},
        {"qk_norm": True, "init_values": 0.1},  # q/k norms and LayerScale in the last block
        {"block_fn": ResPostBlock},  # another block class: the full last block runs
    ],
    ids=["default", "no_qkv_bias", "qk_norm_layerscale", "res_post_block"],
)
def test_eval_descriptor_equals_aggregating_the_full_forward(variant):
    """The eval path computes the last block for the K part tokens only; the descriptor must equal
    the aggregation of the K tokens of timm's own full ``forward_features``."""
    model = small_paw(**variant).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        reference = model.aggregation(model.forward_features(x)[:, :K])
        torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-5)


def test_eval_returns_descriptor_only_and_skips_training_modules():
    model = small_paw().eval()
    called = []
    for name in ("atm", "heads"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: called.append(name))
    out = model(torch.randn(3, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (3, 32)
    assert called == []


def test_part_attention_is_the_training_atm_output_without_touching_batchnorm():
    model = small_paw()  # no dropout, no drop path: train and eval tokens are identical
    x = torch.randn(2, 3, 64, 64)
    expected = model.train()(x).atm_maps.detach()
    running_mean = model.heads.bnneck.running_mean.clone()
    maps = model.part_attention(x)  # still in train mode: BatchNorm would update if run
    assert maps.shape == (2, K + 1, 16, 16)
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(model.heads.bnneck.running_mean, running_mean)


def test_train_outputs_and_orientation_per_part():
    model = small_paw(orientation_bnneck="separate").train()
    out = model(torch.randn(4, 3, 64, 64))
    assert out.id_logits.shape == (4, 7)
    assert out.orientation_logits.shape == (4, K)
    assert out.descriptor.shape == (4, 32)


def test_bnneck_bias_is_frozen():
    model = small_paw()
    assert not model.heads.bnneck.bias.requires_grad


def test_gradients_reach_part_tokens_from_segmentation_and_orientation_losses():
    model = small_paw().train()
    out = model(torch.randn(2, 3, 64, 64))
    target = torch.randint(0, K + 1, (2, 16, 16))
    SegmentationLoss()(target, maps=out.atm_maps).backward(retain_graph=True)
    assert (model.reg_token.grad[0, :K].abs().sum(dim=-1) > 0).all()  # every part token
    model.zero_grad()
    visible = torch.ones(2, K, dtype=torch.bool)
    OrientationLoss()(out.orientation_logits, torch.tensor([0, 1]), visible).backward()
    assert (model.reg_token.grad[0, :K].abs().sum(dim=-1) > 0).all()


def test_loads_a_timm_vit_checkpoint_with_resampled_positions(tmp_path, caplog):
    torch.manual_seed(1)
    vit = timm.create_model("vit_tiny_patch16_224", img_size=48, embed_dim=32, depth=2, num_heads=4)
    state = vit.state_dict()  # 3×3 grid + CLS, ImageNet head
    path = tmp_path / "vit.safetensors"
    save_file(state, str(path))
    with caplog.at_level(logging.WARNING):
        model = timm.create_model(
            "paw_vit_tiny_patch16_256",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path)),
            num_parts=K,
            num_classes=5,
            **SMALL,
        )
    loaded = model.state_dict()
    for key, value in state.items():
        if key.startswith(("head.", "cls_token", "pos_embed")):
            continue
        torch.testing.assert_close(loaded[key], value, msg=key)
    cls_pos = state["pos_embed"][:, :1]
    for t in range(K + 1):
        torch.testing.assert_close(loaded["pos_embed"][:, t : t + 1], cls_pos)
    grid = resample_abs_pos_embed(state["pos_embed"][:, 1:], new_size=[4, 4], num_prefix_tokens=0)
    torch.testing.assert_close(loaded["pos_embed"][:, K + 1 :], grid)
    assert "reg_token" in caplog.text and "atm.q.weight" in caplog.text  # missing keys reported
    assert "head.weight" not in loaded


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        timm.create_model(
            "paw_vit_tiny_patch16_256",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(tmp_path / "nope.safetensors")),
        )
    with pytest.raises(UserError, match="does not exist"):
        build_model(ModelSpec("vit_tiny_patch16_224", pretrained=str(tmp_path / "x.pth")), 3, 1)


def test_checkpoint_of_another_size_is_a_clear_error(tmp_path):
    vit = timm.create_model("vit_tiny_patch16_224", img_size=48, embed_dim=64, depth=2, num_heads=4)
    path = tmp_path / "vit.safetensors"
    save_file(vit.state_dict(), str(path))
    with pytest.raises(UserError, match="same ViT size"):
        timm.create_model(
            "paw_vit_tiny_patch16_256",
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path)),
            **SMALL,
        )


@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "seresnet50"])
def test_baselines_share_the_heads(arch):
    model = build_model(ModelSpec(arch, img_size=64), num_classes=6, num_parts=K).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.id_logits.shape == (2, 6)
    assert out.orientation_logits.shape == (2, 1)
    assert out.atm_maps is None
    model.eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, model.num_features)


@pytest.mark.parametrize("arch", ["paw_vit", "seresnet18"])
def test_descriptor_after_bnneck_is_the_descriptor_through_the_running_statistics(arch):
    """`after_bnneck` changes only what eval mode returns: per dimension (d - running mean) /
    sqrt(running var + eps) × weight (the bias is frozen at 0) of the `before_bnneck` descriptor
    of the same weights; training outputs are the same."""

    def build(descriptor):
        torch.manual_seed(0)
        if arch == "paw_vit":
            return small_paw(descriptor=descriptor)
        spec = ModelSpec(arch, img_size=64, descriptor=descriptor)
        return build_model(spec, num_classes=7, num_parts=K)

    before, after = build("before_bnneck"), build("after_bnneck")
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        for _ in range(3):  # BatchNorm's running statistics move off their initial 0 / 1
            before.train()(x)
        before.heads.bnneck.weight.uniform_(0.5, 2.0)
    after.load_state_dict(before.state_dict())
    bn = before.heads.bnneck
    assert bn.running_mean.abs().max() > 1e-3 and (bn.running_var - 1).abs().max() > 1e-3
    with torch.no_grad():
        trained = before.eval()(x)
        expected = (trained - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight
        torch.testing.assert_close(after.eval()(x), expected, rtol=1e-5, atol=1e-5)
        torch.manual_seed(1)
        out_before = before.train()(x)
        torch.manual_seed(1)
        out_after = after.train()(x)
    torch.testing.assert_close(out_after.descriptor, out_before.descriptor)
    torch.testing.assert_close(out_after.id_logits, out_before.id_logits)


@pytest.mark.parametrize("frozen", [False, True], ids=["trained", "frozen"])
@pytest.mark.parametrize("arch", ["cnn_efflite0", "resnet18"])
def test_output_stride_16_is_the_same_network_on_a_grid_twice_as_fine(arch, frozen):
    """Dilating the last stage instead of striding it keeps every weight: a stride-2 convolution
    is the stride-1 one read at even positions, and a convolution dilated by 2 on that grid is
    the original one on the coarse grid. So the stride-32 feature map is every other cell of the
    stride-16 one, exactly (for networks without global context inside, such as SE blocks)."""
    torch.manual_seed(0)
    coarse = build_model(ModelSpec(arch, img_size=128, frozen=frozen), 5, K).eval()
    for module in coarse.modules():  # off their initial statistics, so no layer is trivial
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.1)
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    fine = build_model(ModelSpec(arch, img_size=128, frozen=frozen, output_stride=16), 5, K)
    fine.load_state_dict(coarse.state_dict())  # strict: the same tensors in the same shapes
    fine.eval()
    x = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        maps = [(m if frozen else m.backbone).forward_features(x) for m in (coarse, fine)]
        descriptors = coarse(x), fine(x)
    assert maps[0].shape[-2:] == (4, 4) and maps[1].shape[-2:] == (8, 8)
    assert maps[0].std() > 0.3
    torch.testing.assert_close(maps[1][..., ::2, ::2], maps[0])
    assert descriptors[1].shape == descriptors[0].shape  # pooled over 64 cells instead of 16
    assert not torch.allclose(descriptors[1], descriptors[0])


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("paw_vit_tiny_patch16_256", "PAW-ViT and the hybrid ViTs take their stem's stride"),
        ("vit_efflite0_s32", "PAW-ViT and the hybrid ViTs take their stem's stride"),
        ("vit_tiny_patch16_224", "model vit_tiny_patch16_224 has no output_stride"),
    ],
)
def test_output_stride_is_refused_where_it_means_nothing(arch, message):
    with pytest.raises(UserError, match=message):
        build_model(ModelSpec(arch, img_size=64, output_stride=16), num_classes=5, num_parts=K)
    if arch.startswith("vit_tiny"):  # the others cannot be frozen at all
        with pytest.raises(UserError, match=message):
            build_model(ModelSpec(arch, img_size=64, output_stride=16, frozen=True), 0, K)


def test_descriptor_choice_is_checked():
    with pytest.raises(ValueError, match="descriptor must be one of"):
        small_paw(descriptor="after_neck")
    with pytest.raises(UserError, match="frozen and has no BNNeck"):
        build_model(ModelSpec("cnn_efflite0", frozen=True, descriptor="after_bnneck"), 0, K)


def test_mean_aggregation_is_the_mean_of_the_part_tokens_in_eval_and_training():
    """``aggregation='mean'``: the descriptor is the plain mean of the K part tokens of timm's own
    full forward (never the background token), with no aggregation parameters; the rest of
    PAW-ViT (ATM maps, orientation logits) is unchanged."""
    model = small_paw(aggregation="mean")
    assert not [name for name, _ in model.named_parameters() if name.startswith("aggregation")]
    x = torch.randn(3, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        tokens = model.forward_features(x)
        torch.testing.assert_close(model(x), tokens[:, :K].mean(dim=1), rtol=1e-5, atol=1e-5)
    model.train()
    out = model(x)
    tokens = model.forward_features(x)  # drop_path is 0: training runs the same tokens
    torch.testing.assert_close(out.descriptor, tokens[:, :K].mean(dim=1))
    assert out.atm_maps.shape == (3, K + 1, 16, 16) and out.orientation_logits.shape[1] == K
    out.descriptor.sum().backward()
    assert model.reg_token.grad[0, :K].abs().sum() > 0  # every part token feeds it
    assert model.reg_token.grad[0, K].abs().sum() > 0  # and the background, through attention


def test_aggregation_choice_is_checked():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        small_paw(aggregation="sum")
    with pytest.raises(UserError, match="has no part tokens to aggregate"):
        build_model(ModelSpec("vit_efflite0", img_size=64, aggregation="mean"), 5, K)
