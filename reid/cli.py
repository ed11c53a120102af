"""`reid` console script: catalogue, train, extract, evaluate.

Every error a user can cause prints one line (`reid: error: ...`, exit code 2) naming the thing and
the fix; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from reid.errors import UserError


def _json_arg(text: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{what} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise UserError(f"{what} must be a JSON object")
    return value


def cmd_catalogue(args: argparse.Namespace) -> None:
    from reid.catalogue import write_catalogue
    from reid.datasets import build_catalogue

    options = _json_arg(args.options_json, "--options-json")
    table = build_catalogue(args.adapter, args.root, options, check_images=args.check_images)
    write_catalogue(table, args.out)
    counts = table["split"].value_counts().to_dict()
    logging.info("wrote %s: %d images, %s", args.out, len(table), counts)


def cmd_train(args: argparse.Namespace) -> None:
    from reid.config import RunSettings
    from reid.engine.train import Trainer, TrainInputs

    settings = RunSettings.load(Path(args.settings) if args.settings else None, args.settings_json)
    inputs = TrainInputs(Path(args.catalogue), Path(args.root), Path(args.masks), Path(args.out))
    trainer = Trainer(
        settings, inputs, device=args.device, workers=args.workers, progress=not args.no_progress
    )
    trainer.fit(resume=args.resume)


def cmd_extract(args: argparse.Namespace) -> None:
    from reid.catalogue import read_catalogue
    from reid.engine.distributed import DistContext, resolve_device
    from reid.engine.extract import extract_descriptors, load_trained_model, save_features

    device = resolve_device(args.device, DistContext())
    model, config = load_trained_model(Path(args.model_dir), device)
    catalogue = read_catalogue(args.catalogue)
    rows = catalogue[catalogue["split"].isin(args.splits)]
    if rows.empty:
        raise UserError(
            f"{args.catalogue} has no rows with split {' or '.join(args.splits)}: nothing to extract"
        )
    started = time.perf_counter()
    features = extract_descriptors(
        model,
        [Path(args.root) / p for p in rows["path"]],
        config["model"]["img_size"],
        device,
        batch_size=args.batch_size,
        flip_test=args.flip_test,
        workers=args.workers,
    )
    save_features(Path(args.out), list(rows["image_id"]), features)
    logging.info(
        "wrote %s: %d × %d in %.1f s", args.out, *features.shape, time.perf_counter() - started
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from reid.atomic import atomic_write_text
    from reid.catalogue import read_catalogue
    from reid.engine.extract import load_features
    from reid.evaluation import atrw_submission, evaluate_features
    from reid.provenance import provenance

    started = time.perf_counter()
    ids, features = load_features(Path(args.features))
    catalogue = read_catalogue(args.catalogue)
    gt = Path(args.atrw_gt) if args.atrw_gt else None
    result = evaluate_features(
        features,
        ids,
        catalogue,
        args.protocol,
        atrw_gt=gt,
        with_rankings=args.submission is not None,
    )
    if result.queries_without_match:
        logging.warning(
            "%d queries have no correct match in the gallery; they count AP 0",
            result.queries_without_match,
        )
    metrics = dict(result.metrics)
    metrics["provenance"] = provenance(
        Path(args.model_dir) if args.model_dir else None,
        protocol=args.protocol,
        evaluate_seconds=time.perf_counter() - started,
    )
    atomic_write_text(Path(args.out), json.dumps(metrics, indent=2))
    if args.submission:
        atomic_write_text(Path(args.submission), json.dumps(atrw_submission(result)))
    logging.info("wrote %s", args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid", description="PAW-ViT animal re-identification")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("catalogue", help="read a dataset into catalogue.csv")
    p.add_argument("--adapter", required=True, help="atrw, yakreid, folder, csv or synthetic")
    p.add_argument("--root", required=True, help="dataset root directory")
    p.add_argument("--options-json", default="{}", help="adapter options as a JSON object")
    p.add_argument("--check-images", default="header", choices=["none", "header", "decode"])
    p.add_argument("--out", required=True, help="catalogue.csv to write")
    p.set_defaults(func=cmd_catalogue)

    p = sub.add_parser("train", help="train a model on a catalogue and its part maps")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--settings", help="resolved run settings (JSON file)")
    group.add_argument("--settings-json", help="resolved run settings (JSON string)")
    p.add_argument("--catalogue", required=True)
    p.add_argument("--root", required=True, help="dataset root the catalogue paths are relative to")
    p.add_argument("--masks", required=True, help="results/{dataset}/masks/{teacher_id}")
    p.add_argument("--out", required=True, help="run directory (model, history, checkpoints)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=2, help="data loader processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("extract", help="descriptors of catalogue images with a trained model")
    p.add_argument(
        "--model-dir", required=True, help="directory with model.safetensors + model.json"
    )
    p.add_argument("--catalogue", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--splits", nargs="+", default=["test", "query", "gallery"])
    p.add_argument(
        "--flip-test", action="store_true", help="concatenate image and mirror descriptors"
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="features.npz to write")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="re-ID metrics of extracted features")
    p.add_argument("--features", required=True)
    p.add_argument("--catalogue", required=True)
    p.add_argument("--protocol", required=True, choices=["atrw", "query-gallery", "all-vs-all"])
    p.add_argument("--atrw-gt", help="official ATRW gt_test_plain.json (atrw protocol)")
    p.add_argument("--model-dir", help="trained model directory, for provenance in metrics.json")
    p.add_argument("--submission", help="also write the official ATRW submission JSON here")
    p.add_argument("--out", required=True, help="metrics.json to write")
    p.set_defaults(func=cmd_evaluate)
    return parser


def _one_line(error: UserError) -> str:
    """The user's message, also when a data-loader worker raised it (torch then prepends the
    worker's traceback to the message and keeps the error type)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and any("Traceback" in line for line in lines):
        return lines[-1].split(f"{UserError.__module__}.{UserError.__qualname__}: ", 1)[-1]
    return " ".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.func(args)
    except UserError as error:
        print(f"reid: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
