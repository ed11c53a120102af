"""PK identity sampler: batch shape, sampling rules, determinism, DDP shares and exact resume."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from reid.data.sampler import PKSampler
from reid.errors import UserError


@st.composite
def sampler_setups(draw: st.DrawFn) -> tuple[list[str], int, int, int]:
    """Shuffled identity labels (1..12 images per identity), P ≤ identities, K, seed."""
    counts = draw(st.lists(st.integers(1, 12), min_size=1, max_size=12))
    labels = [f"id{i}" for i, count in enumerate(counts) for _ in range(count)]
    labels = draw(st.permutations(labels))
    p = draw(st.integers(1, len(counts)))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    return list(labels), p, k, seed


def _check_batch(batch: list[int], labels: list[str], p: int, k: int) -> None:
    """P blocks of K indices, one identity per block, P distinct identities; repeats only if short."""
    assert len(batch) == p * k
    assert all(isinstance(index, int) and 0 <= index < len(labels) for index in batch)
    blocks = [batch[i * k : (i + 1) * k] for i in range(p)]
    identities = [labels[block[0]] for block in blocks]
    assert len(set(identities)) == p
    sizes = Counter(labels)
    for identity, block in zip(identities, blocks, strict=True):
        assert {labels[index] for index in block} == {identity}
        if sizes[identity] >= k:
            assert len(set(block)) == k  # without replacement
        else:
            assert set(block) == {i for i, label in enumerate(labels) if label == identity}


@settings(max_examples=60, deadline=None)
@given(setup=sampler_setups(), epoch=st.integers(0, 5))
def test_batches_are_p_identities_times_k(
    setup: tuple[list[str], int, int, int], epoch: int
) -> None:
    labels, p, k, seed = setup
    sampler = PKSampler(labels, p=p, k=k, seed=seed)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    num_identities = len(set(labels))
    assert len(batches) == len(sampler) == math.ceil(num_identities / p)
    for batch in batches:
        _check_batch(batch, labels, p, k)
    # Every identity fills at least one P slot per epoch; only the fill-up of the last group
    # repeats identities.
    slots = Counter(labels[batch[i * k]] for batch in batches for i in range(p))
    assert set(slots) == set(labels)
    assert sum(slots.values()) - num_identities == len(batches) * p - num_identities


def test_short_identity_uses_all_its_images_then_repeats() -> None:
    labels = ["a"] * 2 + ["b"] * 10
    batch = next(iter(PKSampler(labels, p=2, k=5, seed=3)))
    a_block = next(block for block in (batch[:5], batch[5:]) if labels[block[0]] == "a")
    assert sorted(set(a_block)) == [0, 1] and len(a_block) == 5
    b_block = batch[5:] if a_block == batch[:5] else batch[:5]
    assert len(set(b_block)) == 5


@settings(max_examples=30, deadline=None)
@given(setup=sampler_setups(), epoch=st.integers(0, 3))
def test_same_seed_and_epoch_give_same_batches(
    setup: tuple[list[str], int, int, int], epoch: int
) -> None:
    labels, p, k, seed = setup
    first, second = PKSampler(labels, p=p, k=k, seed=seed), PKSampler(labels, p=p, k=k, seed=seed)
    first.set_epoch(epoch)
    second.set_epoch(epoch)
    assert list(first) == list(second)
    assert list(first) == list(first)  # re-iterating an epoch repeats it


def test_different_epochs_and_seeds_differ() -> None:
    labels = [str(i // 6) for i in range(20 * 6)]
    sampler = PKSampler(labels, p=4, k=4, seed=7)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    assert list(PKSampler(labels, p=4, k=4, seed=8)) != epochs[0]


@settings(max_examples=40, deadline=None)
@given(setup=sampler_setups(), replicas=st.integers(1, 5), epoch=st.integers(0, 3))
def test_ranks_split_the_single_process_epoch(
    setup: tuple[list[str], int, int, int], replicas: int, epoch: int
) -> None:
    labels, p, k, seed = setup
    single = PKSampler(labels, p=p, k=k, seed=seed)
    single.set_epoch(epoch)
    reference = list(single)
    samplers = [
        PKSampler(labels, p=p, k=k, seed=seed, num_replicas=replicas, rank=rank)
        for rank in range(replicas)
    ]
    shares = []
    for sampler in samplers:
        sampler.set_epoch(epoch)
        shares.append(list(sampler))
    per_rank = math.ceil(len(reference) / replicas)
    assert all(
        len(share) == len(sampler) == per_rank
        for share, sampler in zip(shares, samplers, strict=True)
    )
    # Interleaving the shares (rank r holds positions r, r + R, ...) gives the single-process
    # epoch followed by its first batches again as padding: the positions are disjoint and
    # together cover every single-process batch exactly once plus the padding.
    interleaved = [shares[i % replicas][i // replicas] for i in range(per_rank * replicas)]
    assert interleaved == [reference[i % len(reference)] for i in range(per_rank * replicas)]


def test_resume_mid_epoch_continues_with_the_next_batch() -> None:
    labels = [str(i // 5) for i in range(30 * 5)]
    original = PKSampler(labels, p=3, k=4, seed=11, num_replicas=2, rank=1)
    original.set_epoch(2)
    iterator = iter(original)
    consumed = [next(iterator) for _ in range(2)]
    state = original.state_dict()
    rest = list(iterator)
    assert state["position"] == 2 and state["epoch"] == 2 and state["seed"] == 11

    resumed = PKSampler(labels, p=3, k=4, seed=0, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # a training loop re-entering the saved epoch keeps the position
    assert list(resumed) == rest
    uninterrupted = PKSampler(labels, p=3, k=4, seed=11, num_replicas=2, rank=1)
    uninterrupted.set_epoch(2)
    assert consumed + rest == list(uninterrupted)
    # The restored position is used once: iterating the epoch again yields it whole.
    assert list(resumed) == consumed + rest
    # The following epoch is whole again and matches the uninterrupted run.
    resumed.set_epoch(3)
    original.set_epoch(3)
    assert list(resumed) == list(original)


def test_state_dict_position_overrides_batches_read_ahead() -> None:
    # A DataLoader with workers draws batches from the sampler before the loop uses them; the
    # loop saves its own count, and the resumed run starts right after the last batch it used.
    labels = [str(i // 4) for i in range(16 * 4)]
    sampler = PKSampler(labels, p=2, k=2, seed=5)
    iterator = iter(sampler)
    drawn = [next(iterator) for _ in range(5)]  # 3 used by the loop, 2 prefetched
    state = sampler.state_dict(position=3)
    resumed = PKSampler(labels, p=2, k=2)
    resumed.load_state_dict(state)
    assert drawn[:3] + list(resumed) == list(PKSampler(labels, p=2, k=2, seed=5))


def test_works_as_a_dataloader_batch_sampler() -> None:
    labels = [str(i // 4) for i in range(6 * 4)]
    sampler = PKSampler(labels, p=3, k=2, seed=1)
    loader = DataLoader(torch.arange(len(labels)), batch_sampler=sampler)
    assert [batch.tolist() for batch in loader] == list(PKSampler(labels, p=3, k=2, seed=1))


def test_resume_with_different_setup_is_refused() -> None:
    labels = [str(i // 4) for i in range(40)]
    state = PKSampler(labels, p=2, k=4).state_dict()
    with pytest.raises(UserError, match="k=4"):
        PKSampler(labels, p=2, k=3).load_state_dict(state)
    with pytest.raises(UserError, match="num_replicas"):
        PKSampler(labels, p=2, k=4, num_replicas=2).load_state_dict(state)


def test_too_few_identities_is_a_user_error() -> None:
    with pytest.raises(UserError, match="2 identities, fewer than p=3"):
        PKSampler(["a", "a", "b"], p=3, k=2)
    with pytest.raises(UserError, match="rank=2"):
        PKSampler(["a", "b"], p=1, k=1, num_replicas=2, rank=2)
