"""Benchmark of reid.evaluation against straightforward per-query loops on random features.

    .venv/bin/python bench/bench_evaluator.py            # ATRW size, with reference loops
    .venv/bin/python bench/bench_evaluator.py --large    # also 20k queries x 200k gallery
    .venv/bin/python bench/bench_evaluator.py --atrw-gt ../shared/data/atrw/gt_test_plain.json

ATRW size: 1,764 test images under the atrw protocol with random identities, cameras, frames and
groups. The library is timed against two references that share its similarity matrix (so the
numbers must agree to rounding): a per-query loop that walks each ranking in Python, as the
official scorer does, and a per-query loop vectorised with numpy (torchreid style).
The large case times the query-gallery protocol and checks a subset of queries against the numpy
reference. The references live here, not in the package, so they stay independent of it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from reid.evaluation import evaluate_features
from reid.evaluation.atrw_ground_truth import load_atrw_ground_truth

REPEATS = 7
"""Timings are the best of this many runs (this VM's timings vary by +-20 % run to run)."""

RowMasks = Callable[[int], tuple[np.ndarray, np.ndarray]]
"""Query index -> (positive mask, junk mask) over the gallery, in gallery order."""


def reference_scores(
    similarity: np.ndarray, masks: RowMasks, walk: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query AP, INP and first-positive rank (0 = none), one query at a time.

    Each row is ranked with a stable sort of the negated similarity; ``walk`` visits the ranked
    items one by one in Python, otherwise the row is scored with numpy.
    """
    num_queries = len(similarity)
    ap, inp, first = np.zeros(num_queries), np.zeros(num_queries), np.zeros(num_queries, int)
    for q in range(num_queries):
        order = np.argsort(-similarity[q], kind="stable")
        positive, junk = (mask[order] for mask in masks(q))
        if walk:
            hits, rank, precision_sum = 0, 0, 0.0
            for is_positive, is_junk in zip(positive.tolist(), junk.tolist(), strict=True):
                if is_junk:
                    continue
                rank += 1
                if is_positive:
                    hits += 1
                    precision_sum += hits / rank
                    first[q] = first[q] or rank
                    last = rank
            if hits:
                ap[q], inp[q] = precision_sum / hits, hits / last
        else:
            kept = positive[~junk]
            hit_ranks = np.flatnonzero(kept) + 1
            if len(hit_ranks):
                ap[q] = np.mean(np.arange(1, len(hit_ranks) + 1) / hit_ranks)
                inp[q], first[q] = len(hit_ranks) / hit_ranks[-1], hit_ranks[0]
    return ap, inp, first


def summarise(ap: np.ndarray, inp: np.ndarray, first: np.ndarray, ranks: tuple[int, ...]) -> dict:
    out = {"mAP": float(ap.mean())}
    out |= {f"rank{k}": float(((first > 0) & (first <= k)).mean()) for k in ranks}
    return out | {"mINP": float(inp.mean())}


def unit_rows(features: np.ndarray) -> np.ndarray:
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def reference_atrw(features: np.ndarray, labels: pd.DataFrame, walk: bool) -> dict:
    """ATRW metrics: single_cam / cross_cam mAP, rank1, rank5 and mmAP."""
    unit = unit_rows(features)
    similarity = unit @ unit.T
    identity = labels["identity"].to_numpy()
    camera = labels["camera"].to_numpy()
    frame = labels["frame"].to_numpy(int)

    def masks(q: int) -> tuple[np.ndarray, np.ndarray]:
        same = identity == identity[q]
        junk = same & (camera == camera[q]) & (np.abs(frame - frame[q]) <= 3)
        junk[q] = True
        return same & ~junk, junk

    ap, inp, first = reference_scores(similarity, masks, walk)
    metrics = {}
    for group, name in (("sing", "single_cam"), ("multi", "cross_cam")):
        members = labels["group"].to_numpy() == group
        scores = summarise(ap[members], inp[members], first[members], (1, 5))
        metrics[name] = {k: scores[k] for k in ("mAP", "rank1", "rank5")}
    metrics["mmAP"] = (metrics["single_cam"]["mAP"] + metrics["cross_cam"]["mAP"]) / 2
    return metrics


def reference_query_gallery(queries: pd.DataFrame, gallery: pd.DataFrame, features: dict) -> dict:
    """Market-style metrics with the numpy per-query loop."""
    similarity = unit_rows(features["query"]) @ unit_rows(features["gallery"]).T
    g_identity, g_camera = gallery["identity"].to_numpy(), gallery["camera"].to_numpy()
    q_identity, q_camera = queries["identity"].to_numpy(), queries["camera"].to_numpy()

    def masks(q: int) -> tuple[np.ndarray, np.ndarray]:
        same = g_identity == q_identity[q]
        junk = same & (g_camera == q_camera[q])
        return same & ~junk, junk

    return summarise(*reference_scores(similarity, masks, walk=False), (1, 5, 10))


def assert_close(actual: dict, expected: dict) -> None:
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_close(actual[key], value)
        else:
            assert abs(actual[key] - value) < 1e-9, (key, actual[key], value)


def timed(function: Callable, *args, **kwargs) -> tuple[object, float]:
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_catalogue(rng: np.random.Generator, count: int, identities: int, split: str) -> dict:
    return {
        "image_id": [f"{split}/{i:07d}" for i in range(count)],
        "identity": rng.integers(0, identities, count).astype(str),
        "split": split,
        "camera": [f"{a}_{b}" for a, b in rng.integers(0, 5, (count, 2))],
    }


def atrw_labels(rng: np.random.Generator, atrw_gt: Path | None) -> pd.DataFrame:
    """The official test labels, or 1,764 random ones in 75 identities of equal expected size."""
    if atrw_gt is not None:
        labels = load_atrw_ground_truth(atrw_gt).reset_index()
        labels["frame"] = labels["frame"].astype(str)
        labels["split"] = "test"
    else:
        count = 1764
        labels = pd.DataFrame(random_catalogue(rng, count, identities=75, split="test"))
        labels["frame"] = rng.integers(0, 300, count).astype(str)
        labels["group"] = rng.choice(["sing", "multi"], count)
    labels["path"] = labels["image_id"]
    return labels


def bench_atrw_size(rng: np.random.Generator, atrw_gt: Path | None) -> None:
    labels = atrw_labels(rng, atrw_gt)
    count, dim = len(labels), 384
    features = rng.standard_normal((count, dim), dtype=np.float32)
    ids = labels["image_id"].tolist()
    sizes = labels["identity"].value_counts()
    source = f"labels of {atrw_gt}" if atrw_gt else "random labels"
    print(
        f"ATRW size: {count} x {count}, D={dim}, atrw protocol, {source} "
        f"({len(sizes)} identities of {sizes.min()}-{sizes.max()} images)"
    )

    evaluate_features(features, ids, labels, "atrw")  # warm-up: imports, BLAS threads
    runs = [timed(evaluate_features, features, ids, labels, "atrw") for _ in range(REPEATS)]
    result, with_rankings = runs[0][0], min(seconds for _, seconds in runs)
    metrics_only, one_thread = (
        min(
            timed(
                evaluate_features,
                features,
                ids,
                labels,
                "atrw",
                with_rankings=False,
                threads=threads,
            )[1]
            for _ in range(REPEATS)
        )
        for threads in (None, 1)
    )
    unit = unit_rows(features)
    matmul = min(timed(np.matmul, unit, unit.T)[1] for _ in range(3))
    tracemalloc.start()
    evaluate_features(features, ids, labels, "atrw")
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    walked, walk_time = timed(reference_atrw, features, labels, walk=True)
    vectorised, numpy_time = timed(reference_atrw, features, labels, walk=False)
    assert_close(result.metrics, walked)
    assert_close(result.metrics, vectorised)

    print(f"  library, with rankings   {with_rankings:7.3f} s   peak traced {peak:.0f} MiB")
    print(f"  library, metrics only    {metrics_only:7.3f} s   ({one_thread:.3f} s on 1 thread)")
    print(f"  (similarity matmul alone {matmul:7.3f} s, shared by library and references)")
    for name, seconds in (("Python walk", walk_time), ("numpy/query", numpy_time)):
        print(
            f"  reference, {name:<13} {seconds:7.3f} s   speed-up {seconds / with_rankings:4.1f}x"
            f" (metrics only {seconds / metrics_only:4.1f}x)"
        )
    print(f"  metrics equal (mmAP {result.metrics['mmAP']:.6f}); peak RSS {peak_rss_mib():.0f} MiB")


def bench_large(rng: np.random.Generator, checked_queries: int = 100) -> None:
    num_queries, num_gallery, dim = 20_000, 200_000, 384
    identities = num_gallery // 20
    queries = pd.DataFrame(random_catalogue(rng, num_queries, identities, "query"))
    gallery = pd.DataFrame(random_catalogue(rng, num_gallery, identities, "gallery"))
    catalogue = pd.concat([queries, gallery], ignore_index=True)
    catalogue["path"] = catalogue["image_id"]
    features = rng.standard_normal((len(catalogue), dim), dtype=np.float32)
    ids = catalogue["image_id"].tolist()
    print(f"large: {num_queries} queries x {num_gallery} gallery, D={dim}, query-gallery")
    print(f"  before evaluation: peak RSS {peak_rss_mib():.0f} MiB (data of this script)")

    result, seconds = timed(evaluate_features, features, ids, catalogue, "query-gallery")
    print(f"  library {seconds:.1f} s, peak RSS {peak_rss_mib():.0f} MiB")
    print(
        f"  mAP {result.metrics['mAP']:.6f}, {result.queries_without_match} queries without match"
    )

    subset = catalogue.copy()
    subset.loc[checked_queries : num_queries - 1, "split"] = "train"
    checked, subset_seconds = timed(evaluate_features, features, ids, subset, "query-gallery")
    expected, reference_seconds = timed(
        reference_query_gallery,
        queries[:checked_queries],
        gallery,
        {"query": features[:checked_queries], "gallery": features[num_queries:]},
    )
    assert_close(checked.metrics, expected)
    print(
        f"  first {checked_queries} queries equal the numpy reference: library "
        f"{subset_seconds:.1f} s, reference {reference_seconds:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 20k queries x 200k gallery")
    parser.add_argument(
        "--atrw-gt",
        type=Path,
        help="official gt_test_plain.json: the ATRW case gets the real identities, cameras and "
        "frames (random features still)",
    )
    args = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}"
    )
    rng = np.random.default_rng(0)
    bench_atrw_size(rng, args.atrw_gt)
    if args.large:
        bench_large(rng)


if __name__ == "__main__":
    main()
