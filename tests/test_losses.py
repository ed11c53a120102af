"""PAW-ViT losses against hand-worked numbers and plain-Python references of the paper's equations.

Expected values are computed with ``math`` from the formulas, never with the torch loss functions
the implementation uses.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reid.errors import UserError
from reid.losses import (
    ORIENTATION_CODES,
    IdentityLoss,
    LossConfig,
    OrientationLoss,
    PawLoss,
    SegmentationLoss,
    TripletLoss,
    labels_to_channels,
)


def _d(degrees: float) -> float:
    """Distance (1 − cos θ)/2 between unit vectors θ degrees apart."""
    return (1.0 - math.cos(math.radians(degrees))) / 2.0


def _unit(degrees: float, scale: float = 1.0) -> list[float]:
    return [scale * math.cos(math.radians(degrees)), scale * math.sin(math.radians(degrees))]


def _bce(logit: float, target: float) -> float:
    """−[y·ln σ(x) + (1 − y)·ln(1 − σ(x))] = ln(1 + eˣ) − y·x."""
    return math.log1p(math.exp(logit)) - target * logit


def _softmax(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


# ---------------------------------------------------------------- identity


def test_identity_label_smoothing_on_three_classes() -> None:
    # logits ln(1), ln(2), ln(1) -> p = (1/4, 1/2, 1/4); true class 1, ε = 0.2, C = 3:
    # q = (0.2/3, 0.8 + 0.2/3, 0.2/3); loss = −Σ q ln p = 2·(0.2/3)·ln 4 + (0.8 + 0.2/3)·ln 2.
    logits = torch.tensor([[0.0, math.log(2.0), 0.0]])
    expected = 2 * (0.2 / 3) * math.log(4.0) + (0.8 + 0.2 / 3) * math.log(2.0)
    loss = IdentityLoss(label_smoothing=0.2)(logits, torch.tensor([1]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # ε = 0 is plain cross-entropy: −ln(1/2).
    plain = IdentityLoss(label_smoothing=0.0)(logits, torch.tensor([1]))
    assert plain.item() == pytest.approx(math.log(2.0), rel=1e-6)


# ---------------------------------------------------------------- triplet

# Labels 0 at 0° and 40°, labels 1 at 60° and 100°, and a singleton (label 2) far away.
# Anchor 0° : hardest positive 40° -> d(40); negatives 60°, 100° -> hardest d(60).
# Anchor 40°: hardest positive d(40); negatives at 20°, 60° away -> hardest d(20).
# Anchor 60°: hardest positive (100°) d(40); negatives 60°, 20° away -> d(20).
# Anchor 100°: hardest positive d(40); negatives 100°, 60° away -> d(60).
# The singleton has no positive: excluded as an anchor; at 200° or 250° it is ≥ 100° from every
# other sample, so it is never anybody's hardest negative.
_LABELS = torch.tensor([0, 0, 1, 1, 2])


def _features(singleton_degrees: float = 200.0) -> torch.Tensor:
    # Mixed norms: the loss must normalise.
    return torch.tensor(
        [_unit(0), _unit(40, 3.0), _unit(60, 0.5), _unit(100), _unit(singleton_degrees, 2.0)],
        dtype=torch.float64,
    )


def _expected_triplet(margin: float) -> float:
    hinges = [
        max(0.0, _d(40) - _d(60) + margin),
        max(0.0, _d(40) - _d(20) + margin),
        max(0.0, _d(40) - _d(20) + margin),
        max(0.0, _d(40) - _d(60) + margin),
    ]
    return sum(hinges) / 4  # four valid anchors, the singleton is not counted


def test_triplet_batch_hard_value() -> None:
    loss = TripletLoss(margin=0.4)(_features(), _LABELS)
    assert loss.item() == pytest.approx(_expected_triplet(0.4), rel=1e-9)


def test_triplet_ignores_changes_to_a_sample_that_is_never_hardest() -> None:
    loss = TripletLoss(margin=0.4)
    assert loss(_features(200.0), _LABELS).item() == pytest.approx(
        loss(_features(250.0), _LABELS).item(), rel=1e-12
    )
    # Whereas moving a hardest negative changes it.
    moved = _features()
    moved[2] = torch.tensor(_unit(70, 0.5), dtype=torch.float64)
    assert loss(moved, _LABELS).item() != pytest.approx(_expected_triplet(0.4), rel=1e-6)


def test_triplet_margin_and_hinge() -> None:
    # With margin 0.1 anchors 0° and 100° give d(40) − d(60) + 0.1 < 0, clipped to 0.
    assert _d(40) - _d(60) + 0.1 < 0
    loss = TripletLoss(margin=0.1)(_features(), _LABELS)
    assert loss.item() == pytest.approx(2 * (_d(40) - _d(20) + 0.1) / 4, rel=1e-9)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["no-positive", "no-negative"])
def test_triplet_without_valid_anchor_is_zero_with_grad(labels: list[int]) -> None:
    features = torch.randn(4, 3, requires_grad=True)
    loss = TripletLoss()(features, torch.tensor(labels))
    assert loss.item() == 0.0
    loss.backward()
    assert features.grad is not None and torch.all(features.grad == 0)


def _triplet_reference(features: list[list[float]], labels: list[int], margin: float) -> float:
    """Batch-hard triplet loss from its definition, with plain-Python loops."""
    units = [[x / math.sqrt(sum(v * v for v in f)) for x in f] for f in features]

    def dist(i: int, j: int) -> float:
        return (1.0 - sum(a * b for a, b in zip(units[i], units[j], strict=True))) / 2.0

    hinges = []
    for a in range(len(labels)):
        pos = [dist(a, j) for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        neg = [dist(a, j) for j in range(len(labels)) if labels[j] != labels[a]]
        if pos and neg:
            hinges.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(hinges) / len(hinges) if hinges else 0.0


@settings(max_examples=40, deadline=None)
@given(
    data=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.lists(st.floats(0.1, 2.0) | st.floats(-2.0, -0.1), min_size=3, max_size=3),
        ),
        min_size=2,
        max_size=8,
    ),
    margin=st.sampled_from([0.0, 0.4, 1.0]),
)
def test_triplet_matches_plain_reference(
    data: list[tuple[int, list[float]]], margin: float
) -> None:
    labels = [label for label, _ in data]
    features = [vector for _, vector in data]
    loss = TripletLoss(margin)(torch.tensor(features, dtype=torch.float64), torch.tensor(labels))
    assert loss.item() == pytest.approx(_triplet_reference(features, labels, margin), abs=1e-9)


# ---------------------------------------------------------------- orientation


def test_orientation_codes_follow_documented_convention() -> None:
    assert ORIENTATION_CODES == {"right": 1, "left": 0, "": -1}


def test_orientation_masks_invisible_parts_and_unknown_samples() -> None:
    logits = torch.tensor([[1.0, -0.5, -50.0], [50.0, 0.3, -2.0], [7.0, 7.0, 7.0]])
    targets = torch.tensor([1, 0, -1])  # right, left, unknown
    visible = torch.tensor([[True, True, False], [False, True, True], [True, True, True]])
    # Visible, known entries only: (1.0, y=1), (−0.5, y=1), (0.3, y=0), (−2.0, y=0).
    expected = (_bce(1.0, 1) + _bce(-0.5, 1) + _bce(0.3, 0) + _bce(-2.0, 0)) / 4
    loss = OrientationLoss()(logits, targets, visible)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # The invisible entries already carry huge wrong logits (−50 for the right-facing sample 0,
    # +50 for the left-facing sample 1); making them even more wrong changes nothing.
    logits[0, 2], logits[1, 0] = -1000.0, 1000.0
    assert OrientationLoss()(logits, targets, visible).item() == pytest.approx(expected, rel=1e-6)


def test_orientation_single_cls_logit_without_visibility() -> None:
    logits = torch.tensor([[2.0], [0.5], [-3.0]])
    targets = torch.tensor([1, -1, 0])
    expected = (_bce(2.0, 1) + _bce(-3.0, 0)) / 2
    assert OrientationLoss()(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_orientation_with_nothing_visible_is_zero_with_grad() -> None:
    logits = torch.randn(2, 3, requires_grad=True)
    targets = torch.tensor([1, -1])
    loss = OrientationLoss()(logits, targets, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad == 0)


# ---------------------------------------------------------------- segmentation

# One 2×2 image, K = 1 part. Labels [[0, 1], [1, 1]]: background at pixel 0, the part elsewhere.
# ATM channel 0 = part, channel 1 = background (last).
_TARGET = torch.tensor([[[0, 1], [1, 1]]])
# Pre-sigmoid similarities (part, background) per pixel, row-major.
_PIXEL_LOGITS = [(-1.0, 2.0), (1.5, 0.0), (0.5, -0.5), (3.0, 1.0)]
_TRUE_CHANNEL = [1, 0, 0, 0]  # label 0 -> channel K = 1, label 1 -> channel 0


def _atm_logits() -> torch.Tensor:
    part = [[_PIXEL_LOGITS[0][0], _PIXEL_LOGITS[1][0]], [_PIXEL_LOGITS[2][0], _PIXEL_LOGITS[3][0]]]
    background = [
        [_PIXEL_LOGITS[0][1], _PIXEL_LOGITS[1][1]],
        [_PIXEL_LOGITS[2][1], _PIXEL_LOGITS[3][1]],
    ]
    return torch.tensor([[part, background]], dtype=torch.float64)


def _pixel_probs(source: str) -> list[list[float]]:
    """Per pixel [p_part, p_background] as the paper's two options define them."""
    if source == "logits_softmax":
        return [_softmax(list(z)) for z in _PIXEL_LOGITS]
    return [_softmax([_sigmoid(v) for v in z]) for z in _PIXEL_LOGITS]


def _seg(**kwargs: object) -> SegmentationLoss:
    return SegmentationLoss(**kwargs)  # type: ignore[arg-type]


def _run(loss: SegmentationLoss) -> float:
    logits = _atm_logits()
    return loss(_TARGET, maps=logits.sigmoid(), logits=logits).item()


def test_labels_to_channels_puts_background_last() -> None:
    labels = torch.tensor([[0, 1], [2, 0]])
    assert labels_to_channels(labels, 3).tolist() == [[2, 0], [1, 2]]
    with pytest.raises(ValueError, match="part labels"):
        labels_to_channels(torch.tensor([[3]]), 3)


def test_cross_term_class_weights_by_hand() -> None:
    # Pixel counts: background f = 1, part f = 3, total 4 -> w_bg = √(4/1) = 2, w_part = √(4/3).
    probs = _pixel_probs("logits_softmax")
    weights = [2.0, math.sqrt(4 / 3), math.sqrt(4 / 3), math.sqrt(4 / 3)]
    nll = [-math.log(probs[i][_TRUE_CHANNEL[i]]) for i in range(4)]
    expected = sum(w * n for w, n in zip(weights, nll, strict=True)) / 4
    loss = _seg(w_dice=0.0, w_cross=1.0, gamma_cross=1.0, prob_source="logits_softmax")
    assert _run(loss) == pytest.approx(expected, rel=1e-9)


def test_cross_term_gamma_exponent() -> None:
    probs = _pixel_probs("logits_softmax")
    weights = [2.0, math.sqrt(4 / 3), math.sqrt(4 / 3), math.sqrt(4 / 3)]
    nll = [-math.log(probs[i][_TRUE_CHANNEL[i]]) for i in range(4)]
    for gamma in (0.5, 1.2, 2.0):
        expected = sum(w * n**gamma for w, n in zip(weights, nll, strict=True)) / 4
        loss = _seg(w_dice=0.0, w_cross=1.0, gamma_cross=gamma, prob_source="logits_softmax")
        assert _run(loss) == pytest.approx(expected, rel=1e-9)
    # γ > 1 shrinks the terms of pixels with −ln p < 1 (here all of them) relative to γ = 1.
    assert all(n < 1 for n in nll)
    assert _run(
        _seg(w_dice=0.0, w_cross=1.0, gamma_cross=2.0, prob_source="logits_softmax")
    ) < _run(_seg(w_dice=0.0, w_cross=1.0, gamma_cross=1.0, prob_source="logits_softmax"))


def test_dice_term_by_hand() -> None:
    # Dice_c = (2·Σ p_c·y_c + ε)/(Σ p_c + Σ y_c + ε) per class; ε = 1e-6.
    eps = 1e-6
    probs = _pixel_probs("sigmoid_softmax")
    losses = []
    for channel in (0, 1):
        p = [probs[i][channel] for i in range(4)]
        y = [1.0 if _TRUE_CHANNEL[i] == channel else 0.0 for i in range(4)]
        dice = (2 * sum(a * b for a, b in zip(p, y, strict=True)) + eps) / (sum(p) + sum(y) + eps)
        losses.append((-math.log(dice)) ** 1.2)
    expected = sum(losses) / 2
    loss = _seg(w_dice=1.0, w_cross=0.0, gamma_dice=1.2)
    assert _run(loss) == pytest.approx(expected, rel=1e-9)


def test_default_weights_combine_both_terms() -> None:
    dice = _run(_seg(w_dice=1.0, w_cross=0.0))
    cross = _run(_seg(w_dice=0.0, w_cross=1.0))
    assert _run(_seg()) == pytest.approx(0.5 * dice + 0.5 * cross, rel=1e-12)


def test_channel_remap_background_last() -> None:
    # A confident prediction with the background in the LAST channel scores near zero cross term;
    # the same maps with the background put first (as if label 0 were channel 0) score badly.
    target = torch.tensor([[[0, 1], [2, 0]]])
    channels = [[2, 0], [1, 2]]  # label 0 -> channel 2 (K = 2), label l -> l − 1
    logits = torch.full((1, 3, 2, 2), -20.0, dtype=torch.float64)
    for row in range(2):
        for col in range(2):
            logits[0, channels[row][col], row, col] = 20.0
    loss = _seg(w_dice=0.0, w_cross=1.0, prob_source="logits_softmax")
    assert loss(target, logits=logits).item() < 1e-6
    background_first = torch.roll(logits, shifts=1, dims=1)
    assert loss(target, logits=background_first).item() > 10.0


def test_prob_sources_differ_as_expected() -> None:
    # Softmax of sigmoid maps is flatter than softmax of the raw similarities: for pixel 3
    # (part 3.0, background 1.0) p_part = σ(σ(3) − σ(1)) ≈ 0.55 versus σ(2) ≈ 0.88.
    assert _pixel_probs("sigmoid_softmax")[3][0] == pytest.approx(
        _sigmoid(_sigmoid(3.0) - _sigmoid(1.0))
    )
    for source in ("sigmoid_softmax", "logits_softmax"):
        probs = _pixel_probs(source)
        weights = [2.0, math.sqrt(4 / 3), math.sqrt(4 / 3), math.sqrt(4 / 3)]
        expected = sum(w * -math.log(probs[i][_TRUE_CHANNEL[i]]) for i, w in enumerate(weights)) / 4
        loss = _seg(w_dice=0.0, w_cross=1.0, gamma_cross=1.0, prob_source=source)
        assert _run(loss) == pytest.approx(expected, rel=1e-9)
    logits_loss = _run(_seg(prob_source="logits_softmax"))
    sigmoid_loss = _run(_seg(prob_source="sigmoid_softmax"))
    assert logits_loss != pytest.approx(sigmoid_loss, rel=1e-3)


def test_segmentation_requires_the_input_its_source_names() -> None:
    logits = _atm_logits()
    with pytest.raises(ValueError, match="needs logits"):
        _seg(prob_source="logits_softmax")(_TARGET, maps=logits.sigmoid())
    with pytest.raises(ValueError, match="needs maps"):
        _seg(prob_source="sigmoid_softmax")(_TARGET, logits=logits)


def _seg_reference(
    logits: list[list[list[list[float]]]], target: list[list[list[int]]], gamma: float
) -> float:
    """L_SS (sigmoid_softmax, w = 0.5/0.5, γ for both) from the equations, in plain Python."""
    eps = 1e-6
    batch, num_channels = len(logits), len(logits[0])
    height, width = len(target[0]), len(target[0][0])
    pixels = [(b, r, c) for b in range(batch) for r in range(height) for c in range(width)]
    probs = {
        px: _softmax([_sigmoid(logits[px[0]][ch][px[1]][px[2]]) for ch in range(num_channels)])
        for px in pixels
    }
    true = {px: (target[px[0]][px[1]][px[2]] - 1) % num_channels for px in pixels}
    counts = [sum(1 for px in pixels if true[px] == ch) for ch in range(num_channels)]
    cross = sum(
        math.sqrt(len(pixels) / counts[true[px]])
        * (-math.log(max(probs[px][true[px]], eps))) ** gamma
        for px in pixels
    ) / len(pixels)
    dice_terms = []
    for b in range(batch):
        for ch in range(num_channels):
            own = [px for px in pixels if px[0] == b]
            inter = sum(probs[px][ch] for px in own if true[px] == ch)
            p_sum = sum(probs[px][ch] for px in own)
            y_sum = sum(1 for px in own if true[px] == ch)
            dice = (2 * inter + eps) / (p_sum + y_sum + eps)
            dice_terms.append(max(0.0, -math.log(dice)) ** gamma)
    return 0.5 * sum(dice_terms) / len(dice_terms) + 0.5 * cross


@settings(max_examples=15, deadline=None)
@given(data=st.data(), parts=st.integers(1, 3), gamma=st.sampled_from([1.0, 1.2, 2.0]))
def test_segmentation_matches_plain_reference(
    data: st.DataObject, parts: int, gamma: float
) -> None:
    batch, height, width = 2, 2, 3
    target = data.draw(
        st.lists(
            st.lists(
                st.lists(st.integers(0, parts), min_size=width, max_size=width),
                min_size=height,
                max_size=height,
            ),
            min_size=batch,
            max_size=batch,
        )
    )
    values = st.floats(-4.0, 4.0)
    logits = data.draw(
        st.lists(
            st.lists(
                st.lists(
                    st.lists(values, min_size=width, max_size=width),
                    min_size=height,
                    max_size=height,
                ),
                min_size=parts + 1,
                max_size=parts + 1,
            ),
            min_size=batch,
            max_size=batch,
        )
    )
    loss = _seg(gamma_dice=gamma, gamma_cross=gamma)
    maps = torch.tensor(logits, dtype=torch.float64).sigmoid()
    value = loss(torch.tensor(target), maps=maps).item()
    assert value == pytest.approx(_seg_reference(logits, target, gamma), rel=1e-6)


# ---------------------------------------------------------------- combined objective


def _batch(requires_grad: bool = False) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    batch, parts, classes = 4, 2, 3
    raw = torch.randn(batch, parts + 1, 4, 4, generator=generator, requires_grad=requires_grad)
    return {
        "descriptor": torch.randn(batch, 8, generator=generator),
        "id_logits": torch.randn(batch, classes, generator=generator),
        "labels": torch.tensor([0, 0, 1, 1]),
        "orient_logits": torch.randn(
            batch, parts, generator=generator, requires_grad=requires_grad
        ),
        "orient_targets": torch.tensor([1, 0, -1, 1]),
        "part_visibility": torch.tensor([[True, False], [True, True], [True, True], [False, True]]),
        "raw": raw,
        "target_maps": torch.randint(0, parts + 1, (batch, 4, 4), generator=generator),
    }


def _paw(config: LossConfig, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    inputs = {key: value for key, value in batch.items() if key != "raw"}
    return PawLoss(config)(**inputs, atm_maps=batch["raw"].sigmoid(), atm_logits=batch["raw"])


def test_total_is_weighted_sum_of_terms() -> None:
    config = LossConfig(alpha=0.5, lam=2.0)
    out = _paw(config, _batch())
    assert set(out) == {"total", "id", "triplet", "orientation", "segmentation"}
    expected = (
        2.0 * out["segmentation"].item()
        + 0.5 * out["triplet"].item()
        + out["orientation"].item()
        + out["id"].item()
    )
    assert out["total"].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("term", ["id", "triplet", "orientation", "segmentation"])
def test_disabling_a_term_removes_it(term: str) -> None:
    batch = _batch()
    weight = {"id": 1.0, "triplet": 0.5, "orientation": 1.0, "segmentation": 1.0}[term]
    full = _paw(LossConfig(), batch)
    without = _paw(LossConfig(**{term: False}), batch)
    assert term not in without
    assert without["total"].item() == pytest.approx(
        full["total"].item() - weight * full[term].item(), rel=1e-6
    )


def test_vit_baseline_inputs_without_parts() -> None:
    # One CLS orientation logit per sample, no ATM: orientation on, segmentation off.
    batch = _batch()
    config = LossConfig(segmentation=False)
    out = PawLoss(config)(
        batch["descriptor"],
        batch["id_logits"],
        batch["labels"],
        orient_logits=torch.tensor([[0.0], [1.0], [2.0], [-1.0]]),
        orient_targets=torch.tensor([1, 0, -1, 1]),
    )
    expected = (_bce(0.0, 1) + _bce(1.0, 0) + _bce(-1.0, 1)) / 3
    assert out["orientation"].item() == pytest.approx(expected, rel=1e-6)
    assert "segmentation" not in out


def test_gradients_reach_atm_maps_and_orientation_logits() -> None:
    batch = _batch(requires_grad=True)
    _paw(LossConfig(), batch)["total"].backward()
    for name in ("raw", "orient_logits"):
        grad = batch[name].grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"seg_prob_source": "softmax"}, "seg_prob_source"),
        ({"margin": -0.1}, "margin"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"gamma_dice": 0.0}, "gamma_dice"),
        ({"id": False, "triplet": False, "orientation": False, "segmentation": False}, "enable"),
    ],
)
def test_bad_config_is_a_user_error(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(UserError, match=key):
        LossConfig(**overrides)  # type: ignore[arg-type]
