"""PAW-ViT: a part-aware Vision Transformer for animal re-identification, built on timm.

A timm ``VisionTransformer`` whose CLS token is replaced by K part tokens plus one background
token (background last). They are timm's "register" tokens, so timm's own position-embedding,
patch-dropout and fused-attention code runs unchanged and the backbone costs what a plain ViT does.

Training-only modules (paper §3):
- ``AttentionToMask`` (ATM): the part tokens' attention over the patches, as sigmoid maps that are
  distilled from the teacher's part label maps;
- ``ReidHeads``: BNNeck + ID classifier on the descriptor and one orientation classifier per part.

The descriptor comes from ``PartAggregation``: a learnable aggregation token cross-attends to the K
part tokens (never the background). In eval mode ``model(x)`` returns only that descriptor (or,
with ``descriptor='after_bnneck'``, the same through the BNNeck), and the last block runs for the
K part tokens alone (``forward_part_tokens``), which makes inference slightly cheaper than a plain
ViT of the same size despite the K extra tokens.

Weights: ``timm.create_model('paw_vit_base_patch16_256', pretrained=True,
pretrained_cfg_overlay=dict(file='vit_base_patch16_224.orig_in21k_ft_in1k.safetensors'))`` loads a
plain timm ViT checkpoint through ``checkpoint_filter_fn``: every extra token's position embedding
starts as a copy of the CLS one and the patch grid is resampled (14×14 → 16×16 for 256 input).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_INCEPTION_MEAN, IMAGENET_INCEPTION_STD
from timm.layers import Mlp, resample_abs_pos_embed, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import nn

from reid.errors import UserError
from reid.models.heads import ReidHeads, ReidOutput

_logger = logging.getLogger(__name__)

__all__ = ["PawViT", "AttentionToMask", "PartAggregation", "PartMean", "checkpoint_filter_fn"]
AGGREGATIONS = ("token", "mean")


class AttentionToMask(nn.Module):
    """Part tokens' attention over the patch tokens, as maps at the mask resolution.

    Paper §3.2: Q = W_q·T_parts (all K+1 tokens), K = W_k·T_patches; per head a scaled dot product
    with scale (C/H)^-1/2 and a sigmoid (not a softmax: several parts may claim a patch, none must),
    then the mean over heads, reshaped row-major to the patch grid and upsampled bilinearly.
    No value projection and no residual: the maps themselves are the output.
    """

    def __init__(self, dim: int, num_heads: int, mask_size: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.mask_size = mask_size
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)

    def forward(
        self, part_tokens: torch.Tensor, patch_tokens: torch.Tensor, grid_size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (maps, logits), each B×T×M×M.

        maps = mean over heads of sigmoid(similarity); logits = mean over heads of the similarity
        (the pre-sigmoid alternative for the segmentation loss's class probabilities).
        """
        b, t, c = part_tokens.shape
        n = patch_tokens.shape[1]
        h = self.num_heads
        q = self.q(part_tokens).view(b, t, h, c // h).transpose(1, 2)
        k = self.k(patch_tokens).view(b, n, h, c // h).transpose(1, 2)
        similarity = (q @ k.transpose(-2, -1)) * self.scale  # B×H×T×N
        maps = similarity.sigmoid().mean(dim=1)
        logits = similarity.mean(dim=1)
        both = torch.cat([maps, logits], dim=1).view(b, 2 * t, *grid_size)
        both = F.interpolate(
            both, size=(self.mask_size, self.mask_size), mode="bilinear", align_corners=False
        )
        return both[:, :t], both[:, t:]


class PartAggregation(nn.Module):
    """Fuse the K part tokens into one descriptor with a learnable aggregation token.

    Released code: ``agg_norm(mlp(norm_v(attn(norm_q(agg), norm_k(parts)))))`` — multi-head
    cross-attention (query from the token, keys and values from the parts, softmax over parts), no
    residual, then LayerNorm, a 4× GELU MLP and a final LayerNorm. The token has no position
    embedding and never enters the ViT, so the backbone's cost does not depend on it.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.num_heads = num_heads
        self.token = nn.Parameter(torch.zeros(1, 1, dim))
        trunc_normal_(self.token, std=0.02)
        self.norm_q = norm(dim)
        self.norm_k = norm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_v = norm(dim)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.norm_out = norm(dim)

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        b, k, c = parts.shape
        h = self.num_heads
        q = self.q(self.norm_q(self.token)).expand(b, -1, -1).view(b, 1, h, c // h).transpose(1, 2)
        kv = self.kv(self.norm_k(parts)).view(b, k, 2, h, c // h).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, kv[0], kv[1])  # B×H×1×C/H
        attended = self.proj(attended.transpose(1, 2).reshape(b, c))
        return self.norm_out(self.mlp(self.norm_v(attended)))


class PartMean(nn.Module):
    """The descriptor as the mean of the K part tokens: no parameters, an ablation of
    ``PartAggregation`` (``aggregation='mean'``) for budgets too short to train that block."""

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        return parts.mean(dim=1)


class PawViT(VisionTransformer):
    """timm ViT with K part tokens + 1 background token instead of CLS (see module docstring).

    Args:
        num_parts: K, the number of body parts of the species (the teacher's labels 1..K).
        num_classes: training identities for the ID classifier; 0 builds a pure extractor.
        mask_size: side of the ATM maps; default img_size / 4 (64 for 256 input, paper §3.2).
        orientation_bnneck: 'shared' (released code) or 'separate' (paper figure).
        descriptor: 'before_bnneck' (the paper's) or 'after_bnneck': what eval mode returns.
        aggregation: 'token' (the paper's aggregation token, ``PartAggregation``) or 'mean' (the
            mean of the part tokens, ``PartMean``).
        **kwargs: timm VisionTransformer arguments (img_size, embed_dim, depth, num_heads, ...).
    """

    def __init__(
        self,
        num_parts: int = 5,
        num_classes: int = 0,
        mask_size: int | None = None,
        orientation_bnneck: str = "shared",
        descriptor: str = "before_bnneck",
        aggregation: str = "token",
        **kwargs: Any,
    ) -> None:
        if num_parts < 1:
            raise ValueError(f"num_parts must be at least 1, got {num_parts}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        kwargs.pop("global_pool", None)
        super().__init__(
            class_token=False,
            reg_tokens=num_parts + 1,
            no_embed_class=False,
            global_pool="",
            num_classes=0,
            **kwargs,
        )
        self.num_parts = num_parts
        self.num_classes = num_classes
        self.mask_size = mask_size or self.patch_embed.img_size[0] // 4
        dim, heads = self.embed_dim, self.blocks[0].attn.num_heads
        # timm starts register tokens near zero (std 1e-6); part tokens must differ from the start
        # so that the K parts can specialise, hence the paper's trunc-normal(0.02).
        trunc_normal_(self.reg_token, std=0.02)
        self.atm = AttentionToMask(dim, heads, self.mask_size)
        self.aggregation = PartAggregation(dim, heads) if aggregation == "token" else PartMean()
        self.heads = ReidHeads(dim, num_classes, num_parts, orientation_bnneck, descriptor)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "reg_token", "aggregation.token"}

    def get_classifier(self) -> nn.Module:
        return self.heads.classifier if self.heads.classifier is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor | ReidOutput:
        """Eval: the descriptor B×D only. Train: a ``ReidOutput`` with every training signal."""
        if not self.training:
            return self.heads.matching_descriptor(self.aggregation(self.forward_part_tokens(x)))
        tokens = self.forward_features(x)
        prefix = self.num_prefix_tokens
        part_tokens = tokens[:, :prefix]  # K parts then background
        descriptor = self.aggregation(part_tokens[:, : self.num_parts])
        id_logits, orientation_logits = self.heads(descriptor, part_tokens[:, : self.num_parts])
        atm_maps, atm_logits = self.atm(part_tokens, tokens[:, prefix:], self.patch_embed.grid_size)
        return ReidOutput(descriptor, id_logits, orientation_logits, atm_maps, atm_logits)

    def forward_part_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The K part tokens after the final norm (B×K×C), equal to ``forward_features(x)[:, :K]``
        but cheaper: only they feed the descriptor, so the last block computes its attention
        queries, output projection and MLP for these K tokens instead of all K+1+N (keys and
        values still come from every token). That skips about three quarters of the last block,
        which more than pays for the extra prefix tokens in every other block."""
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        *blocks, last = self.blocks
        for block in blocks:
            x = block(x)
        if type(last) is not Block or type(last.attn) is not Attention:
            return self.norm(last(x))[:, : self.num_parts]  # a block whose internals differ
        return self.norm(_block_for_first_tokens(last, x, self.num_parts))

    @torch.inference_mode()
    def part_attention(self, x: torch.Tensor) -> torch.Tensor:
        """The ATM maps B×(K+1)×M×M (parts, then background) for figures: what each part token
        attends to. Runs the backbone without the heads, so it does not touch BatchNorm state."""
        tokens = self.forward_features(x)
        prefix = self.num_prefix_tokens
        maps, _ = self.atm(tokens[:, :prefix], tokens[:, prefix:], self.patch_embed.grid_size)
        return maps


def _block_for_first_tokens(block: Block, x: torch.Tensor, count: int) -> torch.Tensor:
    """``block(x)[:, :count]`` for timm's standard pre-norm ``Block`` and ``Attention``,
    computing queries, projection and MLP only for the first ``count`` tokens."""
    attn = block.attn
    b, n, _ = x.shape
    normed = block.norm1(x)
    width = attn.attn_dim
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(normed[:, :count], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(normed, weight[width:], None if bias is None else bias[width:])
    q = q.view(b, count, attn.num_heads, attn.head_dim).transpose(1, 2)
    k, v = kv.view(b, n, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    attended = F.scaled_dot_product_attention(attn.q_norm(q), attn.k_norm(k), v)
    attended = attn.norm(attended.transpose(1, 2).reshape(b, count, width))
    if attn.gate is not None:
        attended = attended * attn.gate(normed[:, :count]).sigmoid()
    y = x[:, :count] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(attended))))
    return y + block.drop_path2(block.ls2(block.mlp(block.norm2(y))))


def checkpoint_filter_fn(
    state_dict: dict[str, torch.Tensor], model: PawViT
) -> dict[str, torch.Tensor]:
    """Adapt a plain timm ViT checkpoint (CLS token, any patch grid) to PAW-ViT.

    - Position embeddings: the CLS entry is copied to each of the K+1 part/background tokens and the
      patch grid is resampled with timm's ``resample_abs_pos_embed`` (bicubic, antialiased).
    - The CLS token itself and the ImageNet classifier are dropped: part tokens start random.
    - Keys the checkpoint lacks (part tokens, ATM, aggregation, heads) keep the model's random
      initialisation (:func:`complete_state_dict`).
    A PAW-ViT checkpoint (already K+1 prefix tokens) passes through unchanged.
    """
    state_dict = state_dict.get("model", state_dict)
    state_dict = state_dict.get("state_dict", state_dict)
    out = dict(state_dict)
    if "pos_embed" in out and "cls_token" in out:
        pos = out["pos_embed"]
        cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
        grid_pos = resample_abs_pos_embed(
            grid_pos, new_size=list(model.patch_embed.grid_size), num_prefix_tokens=0
        )
        prefix_pos = cls_pos.expand(-1, model.num_prefix_tokens, -1)
        out["pos_embed"] = torch.cat([prefix_pos, grid_pos], dim=1)
        del out["cls_token"]
    return complete_state_dict(out, model)


def complete_state_dict(
    state_dict: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """``state_dict`` made to fit ``model`` exactly: keys the model lacks are dropped, keys the
    checkpoint lacks keep the model's own (random) values, both logged so nothing is silently
    ignored; a tensor of another shape is an error naming it."""
    out = dict(state_dict)
    model_state = model.state_dict()
    unexpected = sorted(k for k in out if k not in model_state)
    for key in unexpected:
        del out[key]
    mismatched = sorted(k for k in out if out[k].shape != model_state[k].shape)
    if mismatched:
        detail = ", ".join(
            f"{k} {tuple(out[k].shape)} vs {tuple(model_state[k].shape)}" for k in mismatched[:4]
        )
        raise UserError(
            f"checkpoint does not fit {type(model).__name__} ({detail}): "
            "use weights of the same ViT size (tiny/small/base) and patch size"
        )
    missing = sorted(k for k in model_state if k not in out)
    if missing:
        _logger.warning(
            "%s tensors not in the checkpoint, randomly initialised: %s",
            type(model).__name__,
            _summary(missing),
        )
    if unexpected:
        _logger.warning(
            "checkpoint tensors not used by %s: %s", type(model).__name__, _summary(unexpected)
        )
    for key in missing:
        out[key] = model_state[key]
    return out


def _summary(keys: list[str], full: int = 4) -> str:
    """Tensor names grouped by their top module: a group of up to ``full`` names is listed,
    a larger one counted ('blocks.* (48)'), so a random transformer is one readable line."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".")[0], []).append(key)
    return ", ".join(
        ", ".join(names) if len(names) <= full else f"{top}.* ({len(names)})"
        for top, names in groups.items()
    )


def check_weights_file(pretrained: bool, kwargs: dict[str, Any]) -> None:
    """A named weights file must exist before timm tries (and fails less clearly) to read it."""
    weights_file = (kwargs.get("pretrained_cfg_overlay") or {}).get("file")
    if pretrained and weights_file and not Path(weights_file).is_file():
        raise UserError(
            f"pretrained weights file {weights_file} does not exist: download it (see README, "
            "'Pretrained weights') or set pretrained: false"
        )


def _create_paw_vit(variant: str, pretrained: bool = False, **kwargs: Any) -> PawViT:
    check_weights_file(pretrained, kwargs)
    return build_model_with_cfg(
        PawViT, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs
    )


def _cfg(hf_hub_id: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "hf_hub_id": hf_hub_id,
        "num_classes": 1000,
        "input_size": (3, 256, 256),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": IMAGENET_INCEPTION_MEAN,  # (0.5, 0.5, 0.5): the paper's normalisation
        "std": IMAGENET_INCEPTION_STD,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        # The paper's backbone: ImageNet-21k pretraining, ImageNet-1k fine-tuning (original ViT).
        "paw_vit_base_patch16_256.orig_in21k_ft_in1k": _cfg(
            "timm/vit_base_patch16_224.orig_in21k_ft_in1k"
        ),
        "paw_vit_small_patch16_256.augreg_in21k_ft_in1k": _cfg(
            "timm/vit_small_patch16_224.augreg_in21k_ft_in1k"
        ),
        "paw_vit_tiny_patch16_256.augreg_in21k_ft_in1k": _cfg(
            "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"
        ),
    }
)


@register_model
def paw_vit_tiny_patch16_256(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on ViT-Ti/16 at 256×256: for CPU runs, tests and the demo."""
    args = dict(img_size=256, patch_size=16, embed_dim=192, depth=12, num_heads=3)
    return _create_paw_vit("paw_vit_tiny_patch16_256", pretrained, **{**args, **kwargs})


@register_model
def paw_vit_small_patch16_256(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on ViT-S/16 at 256×256."""
    args = dict(img_size=256, patch_size=16, embed_dim=384, depth=12, num_heads=6)
    return _create_paw_vit("paw_vit_small_patch16_256", pretrained, **{**args, **kwargs})


@register_model
def paw_vit_base_patch16_256(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on ViT-B/16 at 256×256: the paper's model."""
    args = dict(img_size=256, patch_size=16, embed_dim=768, depth=12, num_heads=12)
    return _create_paw_vit("paw_vit_base_patch16_256", pretrained, **{**args, **kwargs})
