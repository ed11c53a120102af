"""How well a trained PAW-ViT's part attention matches the teacher's part maps.

    .venv/bin/python bench/part_attention_quality.py --model-dir results/demo/paw_vit_demo \
        --masks results/demo/masks/<teacher_id> --catalogue results/demo/catalogue.csv \
        --root results/demo/data [--n 48]

For up to ``--n`` training images that have a teacher map, the predicted part of each ATM
pixel (argmax over the K part maps and the background map) is compared with the teacher's
label there. Printed: pixel accuracy (against the share of background pixels, which a model that
predicts background everywhere reaches), the accuracy of the part label on the teacher's
foreground (chance is 1/K), and how different the K part maps are from one another (mean
absolute difference of two parts' sigmoid maps; near 0 means the part tokens collapsed to one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from reid.data.crops import cut_to
from reid.data.images import read_rgb
from reid.data.part_maps import load_part_maps
from reid.data.transforms import Normalisation, resize_image, to_tensor
from reid.engine.extract import load_trained_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--masks", type=Path, required=True, help="a teacher_id directory")
    parser.add_argument("--catalogue", type=Path, required=True)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--n", type=int, default=48)
    args = parser.parse_args()

    model, config = load_trained_model(args.model_dir, torch.device("cpu"))
    maps = load_part_maps(args.masks)
    catalogue = pd.read_csv(args.catalogue, dtype=str, keep_default_na=False)
    rows = catalogue[(catalogue.split == "train") & catalogue.image_id.isin(maps.row_of)]
    rows = rows.head(args.n)
    img_size = int(config["model"]["img_size"])
    normalisation = Normalisation.of(config["model"])
    pixel, foreground, background, spread = [], [], [], []
    for row in rows.itertuples():
        photo = cut_to(read_rgb(args.root / row.path), maps.boxes.get(row.image_id))
        image = resize_image(photo, img_size)  # the model's view, cut as in training
        attention = model.part_attention(to_tensor(image, normalisation)[None])[0].numpy()
        best = attention.argmax(0)
        predicted = np.where(best == len(attention) - 1, 0, best + 1)  # teacher labels: 0 = bg
        teacher = cv2.resize(
            maps.labels[maps.row_of[row.image_id]],
            predicted.shape[::-1],
            interpolation=cv2.INTER_NEAREST,
        )
        pixel.append((predicted == teacher).mean())
        background.append((teacher == 0).mean())
        if (teacher > 0).any():
            foreground.append((predicted[teacher > 0] == teacher[teacher > 0]).mean())
        parts = attention[:-1].reshape(len(attention) - 1, -1)
        spread.append(
            np.abs(parts[:, None] - parts[None]).sum()
            / max(1, len(parts) ** 2 - len(parts))
            / parts.shape[1]
        )
    k = maps.num_parts
    print(f"{args.model_dir}: {len(pixel)} training images, K = {k}")
    print(
        f"  pixel accuracy            {np.mean(pixel):.3f}  (all background: {np.mean(background):.3f})"
    )
    print(f"  part accuracy, foreground {np.mean(foreground):.3f}  (chance: {1 / k:.3f})")
    print(f"  part maps differ by       {np.mean(spread):.4f}  (mean |map_i - map_j|, i != j)")


if __name__ == "__main__":
    main()
