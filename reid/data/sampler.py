"""P×K identity batch sampler for metric learning (batch-hard triplet needs positives in a batch).

Every batch holds P distinct identities with K images each, laid out identity by identity
(``batch[i*K:(i+1)*K]`` share one identity). The sampler only sees the identity label of each
dataset index (from the catalogue), never the images.

Epoch definition: the identities are shuffled and cut into groups of P, so an epoch has
``ceil(num_identities / P)`` batches in total and every identity fills at least one P slot. The
last group, if short, is completed with identities drawn without replacement from the other
identities (so those few appear twice in the epoch); nothing is dropped.

Within a P slot an identity with at least K images gives K distinct images; one with fewer gives
all its images once, and the remainder is drawn from them with replacement.

Determinism: an epoch's batches depend only on ``(seed, epoch)``, never on the number of
processes. Under DDP the epoch's batch list is padded by wrapping around to a multiple of
``num_replicas`` and rank ``r`` takes batches ``r, r + R, r + 2R, …`` (like ``DistributedSampler``),
so all ranks run the same number of steps and, interleaved, reproduce the single-process list
followed by its first ``pad`` batches again.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from reid.errors import UserError


class PKSampler(Sampler[list[int]]):
    """Yield batches of dataset indices: P identities × K images each (use as ``batch_sampler``).

    Call :meth:`set_epoch` before each epoch, as with ``DistributedSampler``. For exact resume,
    save :meth:`state_dict` with the number of batches the training loop has consumed and restore
    it with :meth:`load_state_dict`; the next iteration continues with the following batch.
    """

    def __init__(
        self,
        labels: Sequence[Hashable],
        p: int = 8,
        k: int = 16,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        """``labels[i]`` is the identity of dataset index ``i`` (e.g. the catalogue's column)."""
        super().__init__()
        if p < 1 or k < 1:
            raise UserError(f"PK sampler: p={p} and k={k} must both be >= 1")
        if seed < 0:
            raise UserError(f"PK sampler: seed={seed} must be >= 0")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise UserError(
                f"PK sampler: rank={rank} must be in [0, num_replicas={num_replicas}) and "
                "num_replicas >= 1"
            )
        members: dict[Hashable, list[int]] = {}
        for index, label in enumerate(labels):
            members.setdefault(label, []).append(index)
        if len(members) < p:
            raise UserError(
                f"PK sampler: the training split has {len(members)} identities, fewer than "
                f"p={p} per batch; lower p"
            )
        # Insertion order = first appearance in `labels`, so the identity numbering (and hence the
        # batches) depends only on the label sequence.
        self._members = [np.asarray(indices, dtype=np.int64) for indices in members.values()]
        self.num_images = len(labels)
        self.p = p
        self.k = k
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._resume_at = 0
        self._position = 0

    @property
    def num_identities(self) -> int:
        """Number of distinct identities in the labels."""
        return len(self._members)

    @property
    def batches_per_epoch(self) -> int:
        """Batches in one epoch over all ranks, before DDP padding."""
        return math.ceil(self.num_identities / self.p)

    def __len__(self) -> int:
        """Batches per epoch for this rank (a resumed epoch yields fewer)."""
        return math.ceil(self.batches_per_epoch / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields.

        Setting the epoch that is already current keeps a position restored by
        :meth:`load_state_dict`, so a training loop may call ``set_epoch`` after resuming.
        """
        if epoch != self.epoch:
            self.epoch = epoch
            self._resume_at = 0
            self._position = 0

    def __iter__(self) -> Iterator[list[int]]:
        start, self._resume_at = self._resume_at, 0
        batches = self._rank_batches(self.epoch)
        for position in range(start, len(batches)):
            self._position = position + 1
            yield batches[position]

    def state_dict(self, position: int | None = None) -> dict[str, Any]:
        """State for exact resume.

        ``position`` is the number of this epoch's batches the training loop has consumed. It
        defaults to the number this sampler has yielded, which is right only when nothing reads
        ahead: a ``DataLoader`` with workers prefetches batches, so pass the loop's own count.
        """
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self._position if position is None else position,
            "p": self.p,
            "k": self.k,
            "num_replicas": self.num_replicas,
            "num_images": self.num_images,
            "num_identities": self.num_identities,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore seed, epoch and position; the sampling setup must match the saved one."""
        for key in ("p", "k", "num_replicas", "num_images", "num_identities"):
            if state[key] != getattr(self, key):
                raise UserError(
                    f"PK sampler resume: checkpoint has {key}={state[key]} but this run has "
                    f"{getattr(self, key)}; resume with the same data, batch shape and processes"
                )
        if not 0 <= state["position"] <= len(self):
            raise UserError(
                f"PK sampler resume: position={state['position']} is outside [0, {len(self)}]"
            )
        self.seed = state["seed"]
        self.epoch = state["epoch"]
        self._resume_at = state["position"]
        self._position = state["position"]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` for a single process (the reference every rank shares)."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(self.num_identities)
        shortfall = self.batches_per_epoch * self.p - self.num_identities
        if shortfall:
            last_group = order[(self.batches_per_epoch - 1) * self.p :]
            others = np.setdiff1d(np.arange(self.num_identities), last_group)
            order = np.concatenate([order, rng.choice(others, size=shortfall, replace=False)])
        groups = order.reshape(self.batches_per_epoch, self.p)
        return [
            [int(index) for identity in group for index in self._draw(rng, int(identity))]
            for group in groups
        ]

    def _draw(self, rng: np.random.Generator, identity: int) -> np.ndarray:
        """K image indices of one identity; repeats only if it has fewer than K images."""
        members = self._members[identity]
        if len(members) >= self.k:
            return rng.choice(members, size=self.k, replace=False)
        extra = rng.choice(members, size=self.k - len(members), replace=True)
        return np.concatenate([rng.permutation(members), extra])

    def _rank_batches(self, epoch: int) -> list[list[int]]:
        """This rank's share of the epoch, padded by wrapping so every rank has ``len(self)``."""
        batches = self.epoch_batches(epoch)
        padded = [batches[i % len(batches)] for i in range(len(self) * self.num_replicas)]
        return padded[self.rank :: self.num_replicas]
