"""PAW-ViT vs the plain timm ViT of the same size, side by side in one process.

Prints, per size: inference images/s of both and their ratio (target ≥ 0.95), and the time of one
training step (forward + backward + AdamW) of PAW-ViT with all four losses against the ViT
baseline with CE + triplet (target ≤ 1.15). Runs on CPU here and unchanged on CUDA, in the
precision training would use (--precision auto: bf16 autocast on GPUs with native bf16).

    .venv/bin/python bench/bench_model.py --sizes tiny small --batch 8
"""

from __future__ import annotations

import argparse
import platform
import time

import timm
import torch

from reid.engine.precision import autocast, resolve_precision
from reid.losses import LossConfig, PawLoss
from reid.models import ModelSpec, build_model

ARCH = {
    "tiny": ("paw_vit_tiny_patch16_256", "vit_tiny_patch16_224"),
    "small": ("paw_vit_small_patch16_256", "vit_small_patch16_224"),
    "base": ("paw_vit_base_patch16_256", "vit_base_patch16_224"),
}
NUM_PARTS = 5
NUM_CLASSES = 200


def timed_pair(fn_a, fn_b, device: torch.device, repeats: int) -> tuple[float, float]:
    """Best (minimum) seconds of `fn_a()` and `fn_b()` over `repeats` runs, run alternately after
    a warm-up of each, so that a load change on the machine affects both sides alike. The minimum
    is the run least disturbed by other processes (timeit's convention)."""
    fn_a()
    fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((fn_a, times[0]), (fn_b, times[1])):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            bucket.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def bench_size(
    size: str, batch: int, repeats: int, device: torch.device, precision: str
) -> dict[str, float]:
    paw_arch, vit_arch = ARCH[size]
    torch.manual_seed(0)
    paw = build_model(ModelSpec(paw_arch), NUM_CLASSES, NUM_PARTS).to(device)
    vit = build_model(ModelSpec(vit_arch), NUM_CLASSES, NUM_PARTS).to(device)
    plain = timm.create_model(vit_arch, img_size=256, num_classes=0).to(device).eval()
    x = torch.randn(batch, 3, 256, 256, device=device)
    labels = torch.arange(batch, device=device) // 2  # two images per identity: triplets exist
    targets = torch.randint(0, NUM_PARTS + 1, (batch, 64, 64), device=device)
    orientation = torch.randint(0, 2, (batch,), device=device)

    paw.eval()

    @torch.inference_mode()
    def infer(model):
        with autocast(device, precision):
            model(x)

    paw_infer, vit_infer = timed_pair(lambda: infer(paw), lambda: infer(plain), device, repeats)

    paw.train()
    vit.train()
    paw_loss = PawLoss(LossConfig())
    vit_loss = PawLoss(LossConfig(orientation=False, segmentation=False))
    paw_opt = torch.optim.AdamW(paw.parameters(), lr=1e-5)
    vit_opt = torch.optim.AdamW(vit.parameters(), lr=1e-5)

    def paw_step():
        with autocast(device, precision):
            out = paw(x)
        losses = paw_loss(
            descriptor=out.descriptor.float(),
            id_logits=out.id_logits.float(),
            labels=labels,
            orient_logits=out.orientation_logits.float(),
            orient_targets=orientation,
            part_visibility=torch.ones(batch, NUM_PARTS, dtype=torch.bool, device=device),
            atm_maps=out.atm_maps.float(),
            atm_logits=out.atm_logits.float(),
            target_maps=targets,
        )
        paw_opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        paw_opt.step()

    def vit_step():
        with autocast(device, precision):
            out = vit(x)
        losses = vit_loss(
            descriptor=out.descriptor.float(), id_logits=out.id_logits.float(), labels=labels
        )
        vit_opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        vit_opt.step()

    paw_train, vit_train = timed_pair(paw_step, vit_step, device, repeats)
    return {
        "paw_img_s": batch / paw_infer,
        "vit_img_s": batch / vit_infer,
        "inference_ratio": vit_infer / paw_infer,
        "paw_step_s": paw_train,
        "vit_step_s": vit_train,
        "train_step_ratio": paw_train / vit_train,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", nargs="+", default=["tiny", "small"], choices=list(ARCH))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", help="auto, bf16 or fp32")
    args = parser.parse_args()
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device)
    print(
        f"# {platform.node()} {platform.machine()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"device {device}, {precision}, threads {torch.get_num_threads()}, batch {args.batch}, "
        f"256x256, K={NUM_PARTS}"
    )
    print(
        "size   PAW img/s  ViT img/s  infer ratio (>=0.95)  PAW step s  ViT step s  train ratio (<=1.15)"
    )
    for size in args.sizes:
        r = bench_size(size, args.batch, args.repeats, device, precision)
        print(
            f"{size:6} {r['paw_img_s']:9.2f}  {r['vit_img_s']:9.2f}  {r['inference_ratio']:20.3f}  "
            f"{r['paw_step_s']:10.3f}  {r['vit_step_s']:10.3f}  {r['train_step_ratio']:20.3f}"
        )


if __name__ == "__main__":
    main()
