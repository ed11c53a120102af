"""PAW-ViT against the ViT baseline of the same size on a folder of real photographs, end to end.

    python bench/real_photos.py --data ../shared/data/nyala/train --workdir /tmp/nyala_run

Runs the real workflow (catalogue, teacher, train, extract, evaluate, figures) in ``--workdir`` on
a folder-shaped dataset (``<identity>/<encounter>_<left|right>photo.jpg``, the nyala layout):
whole identities are split half train, half test; part maps come from the teacher members that
need no weights (GrabCut foreground split by the silhouette template); PAW-ViT and a plain ViT of
the same size train for the same epochs from the same random initialisation (one weights file
both load, as they would load the same ImageNet checkpoint); both are evaluated all-vs-all with
same-encounter images as junk. Prints both metrics side by side; the figures and the report are
under ``--workdir``/results/<dataset>/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch
import yaml
from safetensors.torch import save_file

PROJECT = Path(__file__).resolve().parents[1]
METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP")


def write_shared_init(path: Path, arch: str, seed: int) -> None:
    """A random-initialised timm ViT checkpoint that both models start from."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def workflow_config(args: argparse.Namespace, init: Path) -> dict:
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    train = {
        "epochs": args.epochs,
        "eval_every": args.eval_every,
        "batch": {"identities": 8, "images": 4},
        "optimizer": {"lr": args.lr},
        "schedule": {"warmup_epochs": 3, "final_lr": args.lr / 100},
    }
    config["datasets"] = {
        args.name: {
            "adapter": "folder",
            "root": str(args.data.resolve()),
            "options": {
                "pattern": r"^(?P<encounter>\d+)_(?P<orientation>left|right)photo\.[^.]+$",
                "split": {"train_fraction": 0.5, "seed": args.seed},
            },
            "species": args.species,
            "teacher": "offline",
            "model": "paw_vit_real",
            "baseline": "vit_real",
            "protocol": "all-vs-all",
            "train": train,
        }
    }
    config["weights"]["shared_random_init"] = {"path": str(init)}
    config["models"]["paw_vit_real"] = {
        "arch": f"paw_vit_{args.size}_patch16_256",
        "img_size": args.img_size,
        "pretrained": "shared_random_init",
    }
    config["models"]["vit_real"] = {
        "arch": f"vit_{args.size}_patch16_224",
        "img_size": args.img_size,
        "pretrained": "shared_random_init",
    }
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder dataset root")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--name", default="nyala", help="dataset name in the workflow")
    parser.add_argument("--species", default="nyala", help="species of config.yaml")
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    init = (
        args.workdir.resolve() / "resources" / f"vit_{args.size}_random_seed{args.seed}.safetensors"
    )
    if not init.is_file():
        write_shared_init(init, f"vit_{args.size}_patch16_224", args.seed)
    config = workflow_config(args, init)
    (args.workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    results = f"results/{args.name}"
    targets = [
        f"{results}/paw_vit_real/metrics.json",
        f"{results}/vit_real/metrics.json",
        f"{results}/figures/README.md",
    ]
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(PROJECT / "Snakefile")]
    snakemake += ["-d", str(args.workdir), "--cores", str(args.cores)]
    # The rules call the `reid` and `pseudomasks` scripts installed beside this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run([*snakemake, *targets], check=True, env=env)
    report = [*snakemake, "--report", f"{results}/report.html", *targets]
    subprocess.run(report, check=True, env=env)
    wall = time.perf_counter() - started

    print(
        f"\n{args.data}: {args.size} models at {args.img_size}px, {args.epochs} epochs, lr {args.lr}"
    )
    print(f"{'model':<14}" + "".join(f"{m:>9}" for m in METRICS) + f"{'train s':>10}")
    for model in ("paw_vit_real", "vit_real"):
        metrics = json.loads((args.workdir / results / model / "metrics.json").read_text())
        seconds = json.loads((args.workdir / results / model / "model.json").read_text())[
            "train_wall_time_s"
        ]
        row = "".join(f"{metrics[m]:9.3f}" for m in METRICS)
        print(f"{model:<14}{row}{seconds:10.0f}")
    print(f"workflow wall time {wall:.0f} s; figures: {args.workdir / results / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
