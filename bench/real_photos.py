"""PAW-ViT against its baselines on a folder of real photographs, end to end.

    python bench/real_photos.py --data ../shared/data/nyala/train --workdir /tmp/nyala_efflite0 \
        --family efflite0 --seeds 0 1 2
    python bench/real_photos.py --data ../shared/data/nyala/train --workdir /tmp/nyala_run \
        --family random-vit --epochs 40

Runs the real workflow (catalogue, teacher, train, extract, evaluate, figures) in ``--workdir`` on
a folder-shaped dataset (``<identity>/<encounter>_<left|right>photo.jpg``, the nyala layout),
split half train, half test with split seed 0 whatever the training seeds: ``--split identity``
(default) puts whole identities on either side (new animals at test time), ``--split encounter``
each identity's encounters (new sightings of known animals); ``--flank-identities`` then makes
each flank its own identity, for training and scoring (their descriptors are then also scored
per animal, both flanks one identity, to compare with runs without it). Every model is evaluated
all-vs-all with same-encounter images as junk. Part maps come from
``--teacher``: ``offline`` (GrabCut split by the silhouette template) or ``salient_template``
(ISNet, its file given by ``--isnet``).

Families:
- ``efflite0``: the models a machine without a model hub can train, all on ImageNet
  EfficientNet-Lite0 from pip, with config.yaml's settings for them (frozen stride-16 stem,
  192 px): PAW-ViT on the stem, its ViT twin and the whole CNN, once per ``--seeds`` entry
  (``--backbone lite2``: the same models on EfficientNet-Lite2); ``paw_vit_efflite0_s32`` and
  ``vit_efflite0_s32`` put them on the whole network at 320 px.
  The untrained metrics are each run's epoch-0 evaluation (ImageNet stem, random transformer);
  ImageNet's own pooled features (``efflite0_frozen``, no training) are scored beside them.
- ``random-vit``: PAW-ViT and a plain ViT of the same size from the same random initialisation
  (one weights file both load), ``--epochs`` at ``--img-size``.

Prints the metrics (mean ± sd over seeds); the figures and the report are under
``--workdir``/results/<dataset>/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch
import yaml
from safetensors.torch import save_file

from reid.catalogue import read_catalogue
from reid.engine.extract import load_features
from reid.evaluation import evaluate_features
from reid.models.heads import DESCRIPTORS

PROJECT = Path(__file__).resolve().parents[1]
METRICS = ("mAP", "rank1", "rank5", "rank10", "mINP")


def write_shared_init(path: Path, arch: str, seed: int) -> None:
    """A random-initialised timm ViT checkpoint that both models start from."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


EFFLITE0_MODELS = (
    "paw_vit_efflite0",
    "vit_efflite0",
    "cnn_efflite0",
    "paw_vit_efflite0_s32",
    "vit_efflite0_s32",
)
LAPTOP_MODEL = "cnn_efflite0_320"
"""config.yaml's most accurate CPU model, as shipped (cnn_efflite0 with its own train block)."""
FROZEN = "efflite0_frozen"
SPLITS = {
    "identity": {"train_fraction": 0.5, "seed": 0},
    "encounter": {"encounter_fraction": 0.5, "seed": 0},
}


def dataset_entry(args: argparse.Namespace, model: str, baseline: str | None) -> dict:
    entry = {
        "adapter": "folder",
        "root": str(args.data.resolve()),
        "options": {
            "pattern": r"^(?P<encounter>\d+)_(?P<orientation>left|right)photo\.[^.]+$",
            "split": SPLITS[args.split],
            "flank_identities": args.flank_identities,
        },
        "species": args.species,
        "teacher": args.teacher,
        "model": model,
        "protocol": "all-vs-all",
    }
    return entry | ({"baseline": baseline} if baseline else {})


def workflow_config(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """config.yaml with the benchmark's dataset and models; the models to compare."""
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    if args.isnet:
        config["weights"]["isnet_general"]["path"] = str(args.isnet.resolve())
    if args.family == "efflite0":
        models = []
        for seed in args.seeds:
            for base in args.models:
                entry = json.loads(json.dumps(config["models"][base]))
                if args.backbone != "lite0":
                    family = f"eff{args.backbone}"  # efflite2
                    entry["arch"] = entry["arch"].replace("efflite0", family)
                    entry["pretrained"] = f"efficientnet_{args.backbone}.in1k"
                    base = base.replace("efflite0", family)
                entry["train"] = {**entry["train"], "seed": seed}
                if args.epochs:
                    entry["train"]["epochs"] = args.epochs
                if args.img_size:
                    entry["img_size"] = args.img_size
                if args.descriptor:
                    entry["descriptor"] = args.descriptor
                if args.output_stride:
                    entry["output_stride"] = args.output_stride
                if args.aggregation and entry["arch"].startswith("paw_vit"):
                    entry["aggregation"] = args.aggregation
                optimizer = dict(entry["train"]["optimizer"])
                for key in ("lr", "frozen_stem_blocks", "stem_lr_scale"):
                    if getattr(args, key) is not None:
                        optimizer[key] = getattr(args, key)
                entry["train"]["optimizer"] = optimizer
                if args.batch:
                    identities, images = args.batch
                    entry["train"]["batch"] = {"identities": identities, "images": images}
                augment = {
                    key: getattr(args, key)
                    for key in ("erasing", "min_crop_area", "colour")
                    if getattr(args, key) is not None
                }
                if augment:
                    entry["train"]["augment"] = {**entry["train"].get("augment", {}), **augment}
                models.append(name := f"{base}{args.tag}_s{seed}")
                config["models"][name] = entry
        config["datasets"] = {args.name: dataset_entry(args, models[0], (models[1:] or [None])[0])}
        config["datasets"][args.name]["compare"] = [FROZEN]
        return config, models
    init = args.workdir.resolve() / "resources" / f"vit_{args.size}_random_seed0.safetensors"
    if not init.is_file():
        write_shared_init(init, f"vit_{args.size}_patch16_224", 0)
    epochs = args.epochs or 40
    lr = args.lr or 5e-4
    config["datasets"] = {args.name: dataset_entry(args, "paw_vit_real", "vit_real")}
    config["datasets"][args.name]["train"] = {
        "epochs": epochs,
        "eval_every": args.eval_every,
        "batch": {"identities": 8, "images": 4},
        "optimizer": {"lr": lr},
        "schedule": {"warmup_epochs": 3, "final_lr": lr / 100},
    }
    config["weights"]["shared_random_init"] = {"path": str(init)}
    for name, arch in (("paw_vit_real", "paw_vit"), ("vit_real", "vit")):
        config["models"][name] = {
            "arch": f"{arch}_{args.size}_patch16_{256 if arch == 'paw_vit' else 224}",
            "img_size": args.img_size or 128,
            "pretrained": "shared_random_init",
        }
    return config, ["paw_vit_real", "vit_real"]


def summary(workdir: Path, results: str, models: list[str]) -> list[str]:
    """One line per model family: untrained and trained metrics, mean ± sd over seeds."""
    by_family: dict[str, list[Path]] = {}
    for model in models:
        by_family.setdefault(_family(model), []).append(workdir / results / model)
    lines = [f"{'model':<18}{'':>10}" + "".join(f"{m:>16}" for m in METRICS) + f"{'train s':>9}"]
    for family, dirs in by_family.items():
        trained = [json.loads((d / "metrics.json").read_text()) for d in dirs]
        first = [_epoch0(d) for d in dirs]
        seconds = statistics.mean(
            json.loads((d / "model.json").read_text())["train_wall_time_s"] for d in dirs
        )
        for label, runs in (("untrained", first), ("trained", trained)):
            if any(r is None for r in runs):
                continue
            cells = "".join(f"{_mean_sd([r[m] for r in runs]):>16}" for m in METRICS)
            tail = f"{seconds:9.0f}" if label == "trained" else ""
            lines.append(f"{family:<18}{label:>10}{cells}{tail}")
    frozen = workdir / results / FROZEN / "metrics.json"
    if frozen.is_file():
        scored = json.loads(frozen.read_text())
        lines.append(
            f"{FROZEN:<18}{'frozen':>10}" + "".join(f"{scored[m]:>16.3f}" for m in METRICS)
        )
    lines.append(f"({len(next(iter(by_family.values())))} seed(s) per model)")
    return lines


def per_animal(workdir: Path, results: str, models: list[str]) -> list[str]:
    """With --flank-identities: each model's test descriptors scored again with both flanks of
    an animal one identity, so that they compare with runs trained on animal identities."""
    catalogue = read_catalogue(workdir / results / "catalogue.csv")
    catalogue["identity"] = catalogue["identity"].str.replace(r"_(left|right)$", "", regex=True)
    lines = [f"{'per animal':<28}" + "".join(f"{m:>16}" for m in METRICS)]
    by_family: dict[str, list[dict]] = {}
    for model in [*models, FROZEN]:
        ids, features = load_features(workdir / results / model / "features.npz")
        scored = evaluate_features(features, ids, catalogue, "all-vs-all").metrics
        by_family.setdefault(_family(model), []).append(scored)
    for family, runs in by_family.items():
        cells = "".join(f"{_mean_sd([r[m] for r in runs]):>16}" for m in METRICS)
        lines.append(f"{family:<28}{cells}")
    return lines


def _family(model: str) -> str:
    """The model name without its seed suffix (``_s<seed>``)."""
    return model.rsplit("_s", 1)[0] if "_s" in model else model


def _epoch0(model_dir: Path) -> dict[str, float] | None:
    history = (model_dir / "history.csv").read_text().splitlines()
    header, first = history[0].split(","), history[1].split(",")
    row = dict(zip(header, first, strict=True))
    if row.get("epoch") != "0" or not row.get("eval_mAP"):
        return None
    return {m: float(row[f"eval_{m}"]) for m in METRICS}


def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f}±{statistics.stdev(values):.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder dataset root")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--name", default="nyala", help="dataset name in the workflow")
    parser.add_argument("--species", default="nyala", help="species of config.yaml")
    parser.add_argument("--family", default="efflite0", choices=["efflite0", "random-vit"])
    parser.add_argument(
        "--split", default="identity", choices=list(SPLITS), help="new animals or new sightings"
    )
    parser.add_argument(
        "--flank-identities",
        action="store_true",
        help="each flank of an animal is its own identity (dataset option flank_identities)",
    )
    parser.add_argument("--teacher", default="offline", choices=["offline", "salient_template"])
    parser.add_argument(
        "--isnet", type=Path, help="ISNet .onnx file for --teacher salient_template"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="efflite0: train seeds")
    parser.add_argument(
        "--models",
        nargs="+",
        default=list(EFFLITE0_MODELS),
        choices=[*EFFLITE0_MODELS, LAPTOP_MODEL],
    )
    parser.add_argument("--epochs", type=int, help="default: config.yaml's (efflite0), 40 (vit)")
    parser.add_argument("--size", default="tiny", choices=["tiny", "small", "base"])
    parser.add_argument(
        "--img-size",
        type=int,
        help="input side in px; default: config.yaml's (efflite0), 128 (vit)",
    )
    parser.add_argument("--eval-every", type=int, default=10, help="random-vit only")
    parser.add_argument("--lr", type=float, help="default: config.yaml's (efflite0), 5e-4 (vit)")
    parser.add_argument(
        "--frozen-stem-blocks", type=int, help="efflite0: override config.yaml's frozen stem"
    )
    parser.add_argument("--stem-lr-scale", type=float, help="efflite0: the stem's lr × this")
    parser.add_argument(
        "--batch",
        type=int,
        nargs=2,
        metavar=("P", "K"),
        help="efflite0: P identities x K images per batch (train.batch)",
    )
    parser.add_argument(
        "--erasing", type=float, help="efflite0: random-erasing probability (train.augment)"
    )
    parser.add_argument(
        "--min-crop-area",
        type=float,
        help="efflite0: random crops of at least this fraction of the photo (train.augment)",
    )
    parser.add_argument(
        "--colour", type=float, help="efflite0: colour-jitter strength (train.augment)"
    )
    parser.add_argument(
        "--backbone",
        default="lite0",
        choices=["lite0", "lite2"],
        help="efflite0: the ImageNet EfficientNet-Lite under the models (lite2: 1.3x the time)",
    )
    parser.add_argument(
        "--descriptor",
        choices=DESCRIPTORS,
        help="efflite0: what matching uses (model.descriptor; default: config.yaml's)",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        choices=[8, 16, 32],
        help="efflite0, CNN only: model.output_stride (16: the last stage dilated, not strided)",
    )
    parser.add_argument(
        "--aggregation",
        choices=["token", "mean"],
        help="efflite0, PAW-ViT only: model.aggregation (mean: the mean of the part tokens)",
    )
    parser.add_argument("--tag", default="", help="efflite0: suffix of the model names")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    config, models = workflow_config(args)
    (args.workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    results = f"results/{args.name}"
    compared = models + ([FROZEN] if args.family == "efflite0" else [])
    targets = [f"{results}/{model}/metrics.json" for model in compared]
    targets.append(f"{results}/figures/README.md")
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(PROJECT / "Snakefile")]
    snakemake += ["-d", str(args.workdir), "--cores", str(args.cores)]
    # The rules call the `reid` and `pseudomasks` scripts installed beside this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    subprocess.run([*snakemake, *targets], check=True, env=env)
    report = [*snakemake, "--report", f"{results}/report.html", *targets]
    subprocess.run(report, check=True, env=env)
    wall = time.perf_counter() - started

    print(f"\n{args.data}: family {args.family}, teacher {args.teacher}")
    print("\n".join(summary(args.workdir, results, models)))
    if args.flank_identities and args.family == "efflite0":
        print("\n".join(per_animal(args.workdir, results, models)))
    print(f"workflow wall time {wall:.0f} s; figures: {args.workdir / results / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
