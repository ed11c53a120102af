"""Learning rate per epoch: linear warm-up, then cosine decay to a floor (paper §4.2).

A pure function of the epoch, so resuming needs no scheduler state.
"""

from __future__ import annotations

import math


def lr_at(
    epoch: int,
    base_lr: float,
    epochs: int,
    warmup_epochs: int,
    warmup_start_lr: float,
    final_lr: float,
) -> float:
    """Learning rate of `epoch` (0-based)."""
    if epoch < warmup_epochs:
        return warmup_start_lr + (base_lr - warmup_start_lr) * epoch / warmup_epochs
    decay_epochs = max(epochs - warmup_epochs, 1)
    progress = min((epoch - warmup_epochs) / decay_epochs, 1.0)
    return final_lr + 0.5 * (base_lr - final_lr) * (1.0 + math.cos(math.pi * progress))
