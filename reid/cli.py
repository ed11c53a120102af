"""`reid` console script: catalogue, train, freeze, extract, evaluate, compare, identify, export,
figure.

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


def cmd_freeze(args: argparse.Namespace) -> None:
    from reid.config import model_spec
    from reid.engine.freeze import freeze

    spec = model_spec(_json_arg(args.model_json, "--model-json"))
    crops = Path(args.crops) if args.crops else None
    config = freeze(spec, Path(args.out), flip_test=args.flip_test, crops=crops)
    logging.info(
        "wrote %s: %s, frozen, weights %s",
        args.out,
        spec.arch,
        config["pretrained_weights"].get("package") or config["pretrained_weights"]["path"],
    )


def cmd_extract(args: argparse.Namespace) -> None:
    from reid.catalogue import read_catalogue
    from reid.data.crops import boxes_for
    from reid.data.transforms import Normalisation
    from reid.engine.distributed import DistContext, resolve_device
    from reid.engine.extract import (
        extract_descriptors,
        load_trained_model,
        model_crop_boxes,
        save_features,
    )

    device = resolve_device(args.device, DistContext())
    model, config = load_trained_model(Path(args.model_dir), device)
    crops = Path(args.crops) if args.crops else None
    boxes = model_crop_boxes(config, crops, Path(args.model_dir))
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
        precision=args.precision,
        normalisation=Normalisation.of(config["model"]),
        boxes=None if boxes is None else boxes_for(list(rows["image_id"]), boxes),
    )
    if boxes is not None:
        whole = sum(i not in boxes for i in rows["image_id"])
        if whole:
            logging.warning(
                "%d of %d photos have no animal box from %s (the teacher failed on them or found "
                "no foreground): their whole frames were used",
                whole,
                len(rows),
                args.crops,
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
        threads=args.threads,
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
        descriptor_dim=int(features.shape[1]),
    )
    atomic_write_text(Path(args.out), json.dumps(metrics, indent=2))
    if args.submission:
        atomic_write_text(Path(args.submission), json.dumps(atrw_submission(result)))
    logging.info("wrote %s", args.out)


def cmd_compare(args: argparse.Namespace) -> None:
    from reid.atomic import atomic_write_text
    from reid.comparison import compare_models, read_metrics

    models = []
    for entry in args.metrics:
        name, _, path = entry.rpartition("=")
        models.append((name or Path(path).parent.name, read_metrics(Path(path))))
    comparison = compare_models(models, args.title)
    atomic_write_text(Path(args.out), comparison.markdown())
    if args.html:
        atomic_write_text(Path(args.html), comparison.html())
    logging.info("wrote %s (%d models)", args.out, len(models))


def cmd_identify(args: argparse.Namespace) -> None:
    from reid.atomic import atomic_write_text
    from reid.engine.distributed import DistContext, resolve_device
    from reid.identify import (
        catalogue_gallery,
        default_cache,
        draw_similarity_figure,
        folder_gallery,
        identify,
        query_results,
        results_json,
        results_table,
    )

    source = Path(args.gallery)
    if source.suffix == ".csv":
        if not args.root:
            raise UserError(f"gallery catalogue {source} needs --root, the dataset directory")
        gallery = catalogue_gallery(source, Path(args.root), args.gallery_splits)
    else:
        gallery = folder_gallery(source)
    model_dir = Path(args.model_dir)
    images = [Path(p) for p in args.images]
    cache = Path(args.cache) if args.cache else default_cache(model_dir, source)
    device = resolve_device(args.device, DistContext())
    found = identify(model_dir, gallery, images, args.top_k, cache, device, args.workers)
    results = found.candidates
    if args.format == "json":
        text = json.dumps(results_json(images, results), indent=2)
    else:
        text = results_table(images, results)
    if args.out:
        atomic_write_text(Path(args.out), text + "\n")
    else:
        print(text)
    if args.figure:
        from reid.figures.retrieval import draw_retrieval

        draw_retrieval({model_dir.name: query_results(images, results, gallery)}, Path(args.figure))
        logging.info("wrote %s", args.figure)
    if args.similarity_figure:
        draw_similarity_figure(
            model_dir, gallery, images, found, device, Path(args.similarity_figure)
        )
        logging.info("wrote %s", args.similarity_figure)


def cmd_export(args: argparse.Namespace) -> None:
    from reid.export import export_onnx

    check = export_onnx(Path(args.model_dir), Path(args.out), atol=args.atol)
    logging.info(
        "wrote %s: descriptor %d-d, input N×3×%d×%d; onnxruntime vs PyTorch max abs difference "
        "%.2e (batch sizes %s)",
        check.path,
        check.descriptor_dim,
        check.img_size,
        check.img_size,
        check.max_abs_diff,
        ", ".join(map(str, check.batch_sizes)),
    )


def cmd_figure_attention(args: argparse.Namespace) -> None:
    from reid.data.crops import boxes_for
    from reid.data.transforms import Normalisation
    from reid.engine.distributed import DistContext, resolve_device
    from reid.engine.extract import load_trained_model, model_crop_boxes
    from reid.figures.attention import attention_maps, draw_part_attention
    from reid.identify import teacher_boxes

    if args.images:
        ids, paths = None, [Path(p) for p in args.images]
    elif args.catalogue and args.root:
        ids, rel = _spread_rows(args.catalogue, args.splits, args.n)
        paths = [Path(args.root) / p for p in rel]
    else:
        raise UserError("give --images, or --catalogue and --root to pick images from")
    device = resolve_device(args.device, DistContext())
    model, config = load_trained_model(Path(args.model_dir), device)
    if ids is None:  # loose photos are boxed as `reid identify` boxes them
        boxes = teacher_boxes(paths, config["crop"], device) if config.get("crop") else None
    else:
        crops = Path(args.crops) if args.crops else None
        found = model_crop_boxes(config, crops, Path(args.model_dir))
        boxes = None if found is None else boxes_for(ids, found)
    views, maps = attention_maps(
        model, paths, config["model"]["img_size"], device, Normalisation.of(config["model"]), boxes
    )
    draw_part_attention(views, maps, config["part_names"], Path(args.out))
    logging.info("wrote %s (%d images)", args.out, len(paths))


def _spread_rows(catalogue: str, splits: list[str], n: int) -> tuple[list[str], list[str]]:
    """Image ids and paths of ``n`` catalogue rows of ``splits`` spread evenly over the ids."""
    from reid.catalogue import read_catalogue
    from reid.figures.retrieval import evenly_spread

    table = read_catalogue(catalogue)
    rows = table[table["split"].isin(splits)].sort_values("image_id")
    if rows.empty:
        raise UserError(f"{catalogue} has no rows with split {' or '.join(splits)}")
    picked = rows.iloc[evenly_spread(len(rows), n)]
    return list(picked["image_id"]), list(picked["path"])


def cmd_figure_retrieval(args: argparse.Namespace) -> None:
    from reid.catalogue import read_catalogue
    from reid.engine.extract import load_features
    from reid.figures.retrieval import draw_retrieval, top_k_matches

    catalogue = read_catalogue(args.catalogue)
    results = {}
    queries: list[str] | int = args.n
    for entry in args.features:
        name, _, path = entry.rpartition("=")
        ids, features = load_features(Path(path))
        name = name or Path(path).parent.name
        results[name] = top_k_matches(
            features,
            ids,
            catalogue,
            Path(args.root),
            args.protocol,
            k=args.top_k,
            queries=queries,
            atrw_gt=Path(args.atrw_gt) if args.atrw_gt else None,
        )
        queries = [result.image_id for result in results[name]]  # same queries for every model
    draw_retrieval(results, Path(args.out))
    logging.info("wrote %s", args.out)


def cmd_figure_similarity(args: argparse.Namespace) -> None:
    from reid.catalogue import read_catalogue
    from reid.engine.distributed import DistContext, resolve_device
    from reid.engine.extract import load_features, load_trained_model, model_crop_boxes
    from reid.figures.retrieval import top_k_matches
    from reid.figures.similarity import draw_similarity, trained_model_rows, warn_if_disagreeing

    model_dir = Path(args.model_dir)
    features = Path(args.features) if args.features else model_dir / "features.npz"
    device = resolve_device(args.device, DistContext())
    model, config = load_trained_model(model_dir, device)
    ids, stored = load_features(features)
    results = top_k_matches(
        stored,
        ids,
        read_catalogue(args.catalogue),
        Path(args.root),
        args.protocol,
        k=args.top_k,
        queries=args.n,
        atrw_gt=Path(args.atrw_gt) if args.atrw_gt else None,
    )
    boxes = model_crop_boxes(config, Path(args.crops) if args.crops else None, model_dir)
    rows = trained_model_rows(model, config, results, device, boxes)
    warn_if_disagreeing(
        rows, f"{features}'s", "were these features extracted by this model, with these --crops?"
    )
    top = draw_similarity(rows, Path(args.out))
    logging.info("wrote %s (%d queries; brightest heat = %.2f)", args.out, len(rows), top)


def cmd_figure_curves(args: argparse.Namespace) -> None:
    import pandas as pd

    from reid.figures.curves import draw_training_curves

    history = Path(args.history)
    if not history.is_file():
        raise UserError(f"training history {history} does not exist: train the model first")
    drawn = draw_training_curves(pd.read_csv(history), Path(args.out), title=args.title)
    logging.info("wrote %s (%s)", args.out, ", ".join(drawn))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reid", description="PAW-ViT animal re-identification")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("catalogue", help="read a dataset into catalogue.csv")
    p.add_argument(
        "--adapter",
        required=True,
        help="atrw, yakreid, folder, csv, wildlife_datasets or synthetic",
    )
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

    p = sub.add_parser(
        "freeze", help="model directory of a frozen pretrained backbone (no training, no data)"
    )
    p.add_argument(
        "--model-json",
        required=True,
        help="the model's settings as a JSON object (a config.yaml entry with frozen: true, its "
        "pretrained weights entry resolved)",
    )
    p.add_argument("--flip-test", action="store_true", help="the dataset extracts with --flip-test")
    p.add_argument(
        "--crops",
        help="the dataset's teacher directory when its teacher crops (crop_margin): recorded so "
        "`reid identify` cuts new photos alike",
    )
    p.add_argument("--out", required=True, help="model directory to write")
    p.set_defaults(func=cmd_freeze)

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
    p.add_argument(
        "--crops",
        help="teacher directory (results/<dataset>/masks/<teacher_id>) whose animal boxes the "
        "photos are cut to; required for a model trained on that teacher's crops",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--precision",
        default="auto",
        help="auto (bf16 on GPUs with native bf16, else fp32), bf16 or fp32",
    )
    p.add_argument("--out", required=True, help="features.npz to write")
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="re-ID metrics of extracted features")
    p.add_argument("--features", required=True)
    p.add_argument("--catalogue", required=True)
    p.add_argument("--protocol", required=True, choices=["atrw", "query-gallery", "all-vs-all"])
    p.add_argument("--atrw-gt", help="official ATRW gt_test_plain.json (atrw protocol)")
    p.add_argument("--model-dir", help="trained model directory, for provenance in metrics.json")
    p.add_argument("--submission", help="also write the official ATRW submission JSON here")
    p.add_argument(
        "--threads", type=int, help="CPU threads that rank queries (default: every available CPU)"
    )
    p.add_argument("--out", required=True, help="metrics.json to write")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="one markdown table of several models' metrics")
    p.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        help="metrics.json per model, optionally NAME=PATH (default name: its directory's)",
    )
    p.add_argument("--title", default="the dataset", help="what the models were compared on")
    p.add_argument("--out", required=True, help="comparison.md to write")
    p.add_argument("--html", help="also write the table as an HTML page here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("identify", help="rank the known identities of a gallery for new photos")
    p.add_argument("images", nargs="+", help="new photos to identify")
    p.add_argument("--model-dir", required=True, help="trained model directory")
    p.add_argument(
        "--gallery",
        required=True,
        help="folder with one sub-folder per identity, or a catalogue .csv (with --root)",
    )
    p.add_argument("--root", help="dataset root of a catalogue gallery")
    p.add_argument(
        "--gallery-splits", nargs="+", help="only these catalogue splits (default: all rows)"
    )
    p.add_argument("--top-k", type=int, default=5, help="identities listed per photo")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.add_argument("--out", help="write the table/JSON here instead of printing it")
    p.add_argument("--figure", help="also draw the photos with their top matches (PNG)")
    p.add_argument(
        "--similarity-figure",
        help="also draw what each match rests on: every cell of both photos heated by its share "
        "of their similarity (PNG; convolutional baselines such as cnn_efflite0_320)",
    )
    p.add_argument(
        "--cache",
        help="gallery descriptor cache (default: <model-dir>/identify-cache/<gallery hash>.npz)",
    )
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("export", help="ONNX export of the descriptor network, checked")
    p.add_argument("--model-dir", required=True, help="trained model directory")
    p.add_argument("--out", required=True, help="model.onnx to write")
    p.add_argument(
        "--atol",
        type=float,
        default=1e-3,
        help="largest accepted onnxruntime vs PyTorch difference",
    )
    p.set_defaults(func=cmd_export)

    figure = sub.add_parser("figure", help="figures: attention, retrieval, similarity, curves")
    kinds = figure.add_subparsers(dest="figure", required=True)
    p = kinds.add_parser("attention", help="PAW-ViT part attention maps over images (Fig. 2)")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--images", nargs="+", help="image files")
    p.add_argument("--catalogue", help="pick images from this catalogue instead")
    p.add_argument("--root", help="dataset root of --catalogue")
    p.add_argument("--splits", nargs="+", default=["test", "query", "gallery"])
    p.add_argument("--n", type=int, default=6, help="images picked from the catalogue")
    p.add_argument(
        "--crops",
        help="with --catalogue: the teacher directory whose animal boxes the photos are cut to "
        "(required for a model trained on crops; --images are boxed by its teacher)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=cmd_figure_attention)

    p = kinds.add_parser("retrieval", help="queries and their top-k gallery matches (Figs. 7, 9)")
    p.add_argument(
        "--features",
        nargs="+",
        required=True,
        help="features.npz per model, optionally NAME=PATH; models are drawn side by side",
    )
    p.add_argument("--catalogue", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--protocol", required=True, choices=["atrw", "query-gallery", "all-vs-all"])
    p.add_argument("--atrw-gt", help="official ATRW gt_test_plain.json (atrw protocol)")
    p.add_argument("--n", type=int, default=6, help="queries shown")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=cmd_figure_retrieval)

    p = kinds.add_parser(
        "similarity",
        help="what a convolutional baseline's matches rest on: each photo's cells' shares of "
        "the similarity of test queries and their best matches",
    )
    p.add_argument("--model-dir", required=True)
    p.add_argument("--features", help="its features.npz (default: the one in --model-dir)")
    p.add_argument("--catalogue", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--protocol", required=True, choices=["atrw", "query-gallery", "all-vs-all"])
    p.add_argument("--atrw-gt", help="official ATRW gt_test_plain.json (atrw protocol)")
    p.add_argument(
        "--crops",
        help="the teacher directory whose animal boxes the photos were cut to (required for a "
        "model trained on crops)",
    )
    p.add_argument("--n", type=int, default=6, help="queries shown")
    p.add_argument("--top-k", type=int, default=3, help="matches shown per query")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=cmd_figure_similarity)

    p = kinds.add_parser("curves", help="training losses, learning rate and evaluations")
    p.add_argument("--history", required=True, help="history.csv of a training run")
    p.add_argument("--title")
    p.add_argument("--out", required=True, help="PNG to write")
    p.set_defaults(func=cmd_figure_curves)
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
