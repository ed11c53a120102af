"""The ``pseudomasks`` console script: run | index | teacher-id | show | fetch-weights.

Every :class:`UserError` ends the command with one line ``pseudomasks: error: ...`` on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pseudomasks.errors import UserError
from pseudomasks.settings import config_weights, read_settings, teacher_id

log = logging.getLogger("pseudomasks")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--settings", metavar="FILE", help="resolved settings as a JSON file")
    group.add_argument("--settings-json", metavar="JSON", help="resolved settings as a string")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pseudomasks", description="Teacher part label maps for PAW-ViT, cached by teacher id."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="compute one shard of the training images' part maps")
    run.add_argument("--catalogue", type=Path, required=True, help="catalogue.csv")
    run.add_argument("--root", type=Path, required=True, help="dataset root (catalogue paths)")
    _add_settings(run)
    run.add_argument(
        "--out", type=Path, required=True, help="masks dir; maps go to OUT/{teacher_id}"
    )
    run.add_argument("--shard", type=int, default=0, help="0-based shard index (default 0)")
    run.add_argument("--num-shards", type=int, default=1, help="number of shards (default 1)")
    run.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    run.add_argument("--batch-size", type=int, default=8, help="images per member call")

    index = sub.add_parser("index", help="check all shards, write qc.json and index.json")
    index.add_argument("--masks-dir", type=Path, required=True, help="the {teacher_id} dir")
    index.add_argument("--num-shards", type=int, required=True)

    tid = sub.add_parser("teacher-id", help="print the teacher id of the settings")
    _add_settings(tid)

    show = sub.add_parser("show", help="contact sheet of maps over their images (PNG)")
    show.add_argument("--masks-dir", type=Path, required=True, help="the {teacher_id} dir")
    show.add_argument("--catalogue", type=Path, required=True)
    show.add_argument("--root", type=Path, required=True)
    show.add_argument("--out", type=Path, required=True, help="PNG to write")
    show.add_argument("--n", type=int, default=24, help="number of images (default 24)")

    fetch = sub.add_parser(
        "fetch-weights",
        help="download the missing weights files of the settings, or of entries of a config.yaml "
        "(needs internet)",
    )
    source = fetch.add_mutually_exclusive_group(required=True)
    source.add_argument("--settings", metavar="FILE", help="resolved settings as a JSON file")
    source.add_argument("--settings-json", metavar="JSON", help="resolved settings as a string")
    source.add_argument("--config", type=Path, help="a config.yaml: fetch the named entries")
    fetch.add_argument("names", nargs="*", help="with --config: entries of its weights section")
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    if args.command == "teacher-id":
        print(teacher_id(read_settings(args.settings, args.settings_json)))
    elif args.command == "run":
        from pseudomasks.run import run_shard

        if args.batch_size < 1:
            raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
        run_shard(
            catalogue=args.catalogue,
            root=args.root,
            settings=read_settings(args.settings, args.settings_json),
            masks_dir=args.out,
            shard=args.shard,
            num_shards=args.num_shards,
            device=args.device,
            batch_size=args.batch_size,
        )
    elif args.command == "index":
        from pseudomasks.index import build_index

        qc = build_index(args.masks_dir, args.num_shards)
        log.info("%s: %s", args.masks_dir, qc["counts"])
    elif args.command == "show":
        from pseudomasks.show import write_contact_sheet

        drawn = write_contact_sheet(args.masks_dir, args.catalogue, args.root, args.out, args.n)
        log.info("%s: %d images", args.out, drawn)
    elif args.command == "fetch-weights":
        from pseudomasks.weights import fetch_weights

        if args.config is not None:
            weights = config_weights(args.config, args.names)
        else:
            weights = read_settings(args.settings, args.settings_json).weights
        failures = fetch_weights(weights)
        for failure in failures:
            log.error("error: %s", failure)
        if failures:
            raise UserError(f"{len(failures)} of {len(weights)} weights files are not usable")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pseudomasks: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        _dispatch(args)
    except UserError as exc:
        print(f"pseudomasks: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    finally:
        log.removeHandler(handler)
    return 0
