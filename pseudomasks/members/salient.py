"""Foreground from a salient-object segmentation model (ISNet, U2Net, RMBG-1.4, RMBG-2.0 /
BiRefNet) exported to ONNX, run with onnxruntime.

These models cut the one salient object out of a photo (legs, horns and tail included) with no
prompt, which is what a re-ID photo of one animal needs and what GrabCut does poorly on field
photos. The paper's own foreground model, RMBG-2.0, is one of them. onnxruntime runs them
directly: rembg would add its model downloader and PIL round trips but not the batching or the
per-model constants made explicit here.

``weights`` names the ``.onnx`` file's entry in the settings' weights section. ``model`` is the
preset that says how the network was trained to see its input and what its first output means;
each preset follows the model authors' inference code (rembg's sessions agree, see below):

=========== ====== ==================================== ===========================
``model``   size   input (RGB pixel ``p``)              output 0, ``N×1×h×w``
=========== ====== ==================================== ===========================
isnet       1024   ``(p - 128) / 256``                  probability
u2net       320    ``(p / 255 - mean) / std`` ImageNet  min-max normalised per image
rmbg14      1024   ``p / 255 - 0.5``                    min-max normalised per image
rmbg2       1024   ``(p / 255 - mean) / std`` ImageNet  logits: sigmoid
birefnet    1024   ``(p / 255 - mean) / std`` ImageNet  logits: sigmoid
=========== ====== ==================================== ===========================

Where the constants come from: ``isnet`` is the contract of @imgly/background-removal's ISNet
(``../shared/weights/README.md``), which equals DIS's ``normalize(p / 255, 0.5, 1.0)`` up to
0.4 %; ``u2net`` is rembg ``sessions/u2net.py`` (ImageNet mean/std, 320 px, min-max, as
U-2-Net's ``normPRED``); ``rmbg14`` is BRIA's RMBG-1.4 model card (``normalize(p / 255, 0.5,
1.0)`` at 1024, min-max in ``postprocess_image``); ``rmbg2``/``birefnet`` are BRIA's RMBG-2.0
card (ImageNet mean/std at 1024, ``.sigmoid()``) and rembg ``sessions/birefnet_general.py``.
rembg divides by the image's maximum instead of 255 and resizes with Lanczos; the models were
trained on ``p / 255`` with bilinear resizing, as here (area averaging when shrinking). ``output``
overrides the preset's output rule for an export that differs (e.g. a BiRefNet with the sigmoid
inside: ``output: probability``); a sigmoid preset whose raw output already lies in [0, 1] is
logged as a likely case of that.

The input's name, batch and size are read from the model: a fixed height/width is used as is
(``size`` 0), a dynamic one gets ``size`` or else the preset's; a fixed batch of 1 runs one image
at a time, a dynamic batch ``batch_size`` images per call. The probability is resized back to
the image (bilinear) and thresholded (``> threshold``).

``keep: largest`` keeps one connected component: the one holding the most of the pose
ensemble's keypoints with ``v >= confidence`` when there are any (the animal the pose model
found), else the largest; ``keep: all`` keeps every component. Several animals in one frame
show as several comparable components; a component counts as *sizeable* when its area is at
least ``sizeable`` × the largest's, and :meth:`SalientObject.foreground_components` reports
their number per image so that ``qc.json`` can say how often the choice was needed.

``--device cuda`` uses onnxruntime's CUDAExecutionProvider (package ``onnxruntime-gpu``),
``auto`` uses it when present; the provider actually used is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, Sample, SegmentationMember
from pseudomasks.weights import check_weights_option, resolve_weights

log = logging.getLogger("pseudomasks")

WHERE = "salient"

OUTPUT_RULES = ("probability", "minmax", "sigmoid")
KEEP_RULES = ("largest", "all")

IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@dataclass(frozen=True)
class Preset:
    """How one model family sees its input: ``(pixel - mean) / std`` per RGB channel (pixel
    units) at ``size``×``size`` for dynamic-size exports, and what its first output means."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str


PRESETS: Mapping[str, Preset] = {
    "isnet": Preset(1024, (128.0,) * 3, (256.0,) * 3, "probability"),
    "u2net": Preset(320, IMAGENET_MEAN, IMAGENET_STD, "minmax"),
    "rmbg14": Preset(1024, (127.5,) * 3, (255.0,) * 3, "minmax"),
    "rmbg2": Preset(1024, IMAGENET_MEAN, IMAGENET_STD, "sigmoid"),
    "birefnet": Preset(1024, IMAGENET_MEAN, IMAGENET_STD, "sigmoid"),
}

INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
EXPECTED = (
    "a salient-object model (ISNet, U2Net, RMBG, BiRefNet) in ONNX with input N×3×H×W float "
    "and first output N×1×H×W"
)


def normalise(image: np.ndarray, size: tuple[int, int], preset: Preset) -> np.ndarray:
    """``3×h×w`` float32 network input from an ``H×W×3`` uint8 RGB image; ``size`` is (h, w)."""
    h, w = size
    if image.shape[:2] != (h, w):
        shrink = h * w < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = cv2.resize(image, (w, h), interpolation=interpolation)
    x = (image.astype(np.float32) - np.float32(preset.mean)) / np.float32(preset.std)
    return x.transpose(2, 0, 1)


def to_probability(raw: np.ndarray, rule: str) -> np.ndarray:
    """One image's ``h×w`` output as foreground probability in [0, 1]. A constant min-max
    output (nothing salient, or a blank image) is all background rather than NaN."""
    raw = raw.astype(np.float32)
    if rule == "sigmoid":
        return 1.0 / (1.0 + np.exp(-raw))
    if rule == "minmax":
        lo, hi = float(raw.min()), float(raw.max())
        return (raw - lo) / (hi - lo) if hi > lo else np.zeros_like(raw)
    if rule == "probability":
        return np.clip(raw, 0.0, 1.0)
    raise ValueError(f"unknown output rule {rule!r}")


def select_component(
    mask: np.ndarray, keypoints: np.ndarray | None, confidence: float, sizeable: float
) -> tuple[np.ndarray, int]:
    """The connected component (8-connected) of ``mask`` holding the most keypoints with
    ``v >= confidence``, the largest among equals; and the number of sizeable components (area
    at least ``sizeable`` × the largest's). An empty mask stays empty, with 0 components."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    if count <= 2:
        return mask.astype(bool), count - 1
    rivals = int((areas >= sizeable * areas.max()).sum())
    votes = np.zeros(count - 1, np.int64)
    if keypoints is not None:
        h, w = mask.shape
        ok = np.isfinite(keypoints).all(axis=1) & (keypoints[:, 2] >= confidence)
        xy = np.floor(keypoints[ok, :2]).astype(np.int64)
        xy = xy[(xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)]
        hits = labels[xy[:, 1], xy[:, 0]]
        votes = np.bincount(hits[hits > 0] - 1, minlength=count - 1)
    best = int(np.lexsort((areas, votes))[-1]) + 1
    return labels == best, rivals


class SalientObject(SegmentationMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "weights": "",
        "model": "isnet",
        "size": 0,
        "output": "",
        "threshold": 0.5,
        "keep": "largest",
        "sizeable": 0.1,
        "batch_size": 4,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_weights_option(options, where)
        if options["model"] not in PRESETS:
            raise UserError(
                f"{where}.model: {options['model']!r} unknown; use one of {', '.join(PRESETS)}"
            )
        if options["output"] and options["output"] not in OUTPUT_RULES:
            raise UserError(
                f"{where}.output: {options['output']!r} unknown; use '' (the model's) or one of "
                f"{', '.join(OUTPUT_RULES)}"
            )
        if options["keep"] not in KEEP_RULES:
            raise UserError(f"{where}.keep: use one of {', '.join(KEEP_RULES)}")
        if options["size"] != 0 and not 32 <= options["size"] <= 4096:
            raise UserError(f"{where}.size: must be 0 (the model's) or in [32, 4096]")
        if not 0 < options["threshold"] < 1:
            raise UserError(f"{where}.threshold: must be in (0, 1)")
        if not 0 < options["sizeable"] <= 1:
            raise UserError(f"{where}.sizeable: must be in (0, 1]")
        if options["batch_size"] < 1:
            raise UserError(f"{where}.batch_size: must be >= 1, got {options['batch_size']}")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        self.path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.preset = PRESETS[self.options["model"]]
        self.output_rule = self.options["output"] or self.preset.output
        self.session = _session(self.path, context.device)
        inp, out = self.session.get_inputs()[0], self.session.get_outputs()[0]
        self.input_name, self.output_name = inp.name, out.name
        self.dtype = INPUT_TYPES.get(inp.type)
        n, channels, h, w = _dims(inp.shape, self.path, "input")
        _, out_channels, _, _ = _dims(out.shape, self.path, "output")
        if self.dtype is None or channels not in (3, None) or out_channels not in (1, None):
            raise UserError(
                f"{WHERE}: {self.path} has input {inp.type} {inp.shape} and output {out.shape}; "
                f"expected {EXPECTED}"
            )
        if n not in (1, None):
            raise UserError(
                f"{WHERE}: {self.path} has a fixed batch of {n}; export it with batch 1 or a "
                "dynamic batch"
            )
        self.size = self._input_size(h, w)
        self.batch_size = 1 if n == 1 else self.options["batch_size"]
        self._components: dict[str, int] = {}
        self._warned_probability = False
        log.info(
            "%s: %s as %s at %d×%d, %d image(s) per call, on %s",
            WHERE,
            self.path,
            self.options["model"],
            *self.size,
            self.batch_size,
            self.session.get_providers()[0],
        )

    def _input_size(self, h: int | None, w: int | None) -> tuple[int, int]:
        """(h, w) the model is given: its fixed size, else ``size``, else the preset's."""
        wanted = self.options["size"] or self.preset.size
        if h is None and w is None:
            return wanted, wanted
        if self.options["size"] and (h, w) != (wanted, wanted):
            raise UserError(
                f"{WHERE}.size: {self.path} takes a fixed {h}×{w} input; set size: 0 to use it"
            )
        return h or wanted, w or wanted

    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for start in range(0, len(samples), self.batch_size):
            end = start + self.batch_size
            out.extend(self._predict_batch(samples[start:end], keypoints[start:end]))
        return out

    def foreground_components(self) -> Mapping[str, int]:
        return self._components

    def _predict_batch(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray]:
        batch = np.stack([normalise(s.image, self.size, self.preset) for s in samples])
        (raw,) = self.session.run([self.output_name], {self.input_name: batch.astype(self.dtype)})
        if raw.ndim != 4 or raw.shape[:2] != (len(samples), 1):
            raise UserError(
                f"{WHERE}: {self.path} returned {raw.shape} for a batch of {len(samples)}; "
                f"expected {EXPECTED}"
            )
        self._warn_if_probabilities(raw)
        return [
            self._mask(s, to_probability(r[0], self.output_rule), k)
            for s, r, k in zip(samples, raw, keypoints, strict=True)
        ]

    def _warn_if_probabilities(self, raw: np.ndarray) -> None:
        if self.output_rule == "sigmoid" and not self._warned_probability:
            if raw.min() >= 0 and raw.max() <= 1:
                log.warning(
                    "%s: %s outputs values in [0, 1], as if the sigmoid were inside the model; "
                    "if the masks cover the whole image, set output: probability",
                    WHERE,
                    self.path,
                )
                self._warned_probability = True

    def _mask(
        self, sample: Sample, probability: np.ndarray, keypoints: np.ndarray | None
    ) -> np.ndarray:
        h, w = sample.image.shape[:2]
        if probability.shape != (h, w):
            probability = cv2.resize(probability, (w, h), interpolation=cv2.INTER_LINEAR)
        mask = probability > self.options["threshold"]
        chosen, rivals = select_component(
            mask, keypoints, self.context.confidence, self.options["sizeable"]
        )
        self._components[sample.image_id] = rivals
        if rivals > 1:
            log.debug("%s: %s has %d sizeable components", WHERE, sample.image_id, rivals)
        return chosen if self.options["keep"] == "largest" else mask


def _dims(shape: Sequence[Any], path: Path, what: str) -> tuple[int | None, ...]:
    """A 4-d tensor shape with dynamic (named or unknown) dimensions as None."""
    if len(shape) != 4:
        raise UserError(f"{WHERE}: {path} has a {len(shape)}-d {what} {shape}; expected {EXPECTED}")
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _session(path: Path, device: str) -> Any:
    """An onnxruntime session on the device asked for; UserError for a file it cannot load."""
    import onnxruntime as ort
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

    available = ort.get_available_providers()
    if device not in ("cpu", "cuda", "auto"):
        raise UserError(f"--device {device!r}: use cpu, cuda or auto")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise UserError(
            "--device cuda: onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
            "use --device cpu or auto"
        )
    gpu = device != "cpu" and "CUDAExecutionProvider" in available
    providers = (
        ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    )
    load_errors = (
        ort_errors.Fail,
        ort_errors.InvalidArgument,
        ort_errors.InvalidGraph,
        ort_errors.InvalidProtobuf,
        ort_errors.NotImplemented,
        ort_errors.RuntimeException,
    )
    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except load_errors as exc:
        raise UserError(
            f"{WHERE}: {path} is not an ONNX model onnxruntime can load "
            f"({type(exc).__name__}); expected {EXPECTED}"
        ) from exc
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise UserError(
            "--device cuda: onnxruntime could not start CUDA (see its warning above); "
            "use --device cpu or auto"
        )
    return session
