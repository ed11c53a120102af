"""The resolved settings a `reid train` run receives (the Snakefile resolves config.yaml to this).

One JSON document: ``{"model": {...}, "train": {...}, "protocol": "...", "flip_test": bool}``. The train section has every key filled (schema defaults merged with the
dataset's and the model's overrides), so this module only converts, it does not default; the
one exception is :data:`LATER_TRAIN_SETTINGS`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid.errors import UserError
from reid.evaluation import PROTOCOLS
from reid.losses import LossConfig
from reid.models import ModelSpec


def model_spec(model: dict[str, Any]) -> ModelSpec:
    """A model's settings (a config.yaml entry resolved by the Snakefile) as a ModelSpec; its
    ``train`` overrides belong to the train settings and are dropped here."""
    model = {key: value for key, value in model.items() if key != "train"}
    unknown = set(model) - {f.name for f in dataclasses.fields(ModelSpec)}
    if unknown:
        raise UserError(
            f"unknown model settings {sorted(unknown)}: see workflow/schemas/config.schema.yaml"
        )
    return ModelSpec(**model)


LATER_TRAIN_SETTINGS: dict[tuple[str, ...], Any] = {
    ("augment", "erasing"): 0,
    ("augment", "min_crop_area"): 1,
    ("augment", "colour"): 0,
}
"""Train keys added after models were trained, each with the value that computes what training
computed before the key existed. The Snakefile leaves a key at that value out of settings.json
(:func:`without_later_defaults`), so that upgrading the project does not retrain finished
models; :meth:`TrainSettings.from_dict` puts it back."""


def without_later_defaults(train: dict[str, Any]) -> dict[str, Any]:
    """Resolved train settings less the :data:`LATER_TRAIN_SETTINGS` at their old behaviour."""
    train = copy.deepcopy(train)
    for (*sections, key), value in LATER_TRAIN_SETTINGS.items():
        section = _section(train, sections)
        if key in section and section[key] == value:
            del section[key]
    return train


def _with_later_defaults(train: dict[str, Any]) -> dict[str, Any]:
    train = copy.deepcopy(train)
    for (*sections, key), value in LATER_TRAIN_SETTINGS.items():
        _section(train, sections).setdefault(key, value)
    return train


def _section(train: dict[str, Any], names: list[str]) -> dict[str, Any]:
    for name in names:
        train = train.setdefault(name, {})
    return train


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings (paper §4.2 values are the schema defaults)."""

    epochs: int
    eval_every: int
    select: str
    seed: int
    skip_missing_maps: bool
    identities_per_batch: int
    images_per_identity: int
    lr: float
    weight_decay: float
    stem_lr_scale: float
    frozen_stem_blocks: int
    warmup_epochs: int
    warmup_start_lr: float
    final_lr: float
    rotation: float
    erasing: float
    min_crop_area: float
    colour: float
    flip_as_new_identity: bool
    precision: str
    losses: LossConfig

    @classmethod
    def from_dict(cls, train: dict[str, Any]) -> TrainSettings:
        train = _with_later_defaults(train)
        try:
            losses = dict(train["losses"])
            losses["lam"] = losses.pop("lambda_ss")
            return cls(
                epochs=int(train["epochs"]),
                eval_every=int(train["eval_every"]),
                select=str(train["select"]),
                seed=int(train["seed"]),
                skip_missing_maps=bool(train["skip_missing_maps"]),
                identities_per_batch=int(train["batch"]["identities"]),
                images_per_identity=int(train["batch"]["images"]),
                lr=float(train["optimizer"]["lr"]),
                weight_decay=float(train["optimizer"]["weight_decay"]),
                stem_lr_scale=float(train["optimizer"]["stem_lr_scale"]),
                frozen_stem_blocks=int(train["optimizer"]["frozen_stem_blocks"]),
                warmup_epochs=int(train["schedule"]["warmup_epochs"]),
                warmup_start_lr=float(train["schedule"]["warmup_start_lr"]),
                final_lr=float(train["schedule"]["final_lr"]),
                rotation=float(train["augment"]["rotation"]),
                erasing=float(train["augment"]["erasing"]),
                min_crop_area=float(train["augment"]["min_crop_area"]),
                colour=float(train["augment"]["colour"]),
                flip_as_new_identity=bool(train["augment"]["flip_as_new_identity"]),
                precision=str(train["precision"]),
                losses=LossConfig(**losses),
            )
        except KeyError as missing:
            raise UserError(
                f"train settings lack {missing}: pass the resolved settings the Snakefile writes "
                "(every key of workflow/schemas/train.schema.yaml)"
            ) from None


@dataclass(frozen=True)
class RunSettings:
    """Everything that decides what a training run computes."""

    model: ModelSpec
    train: TrainSettings
    protocol: str
    flip_test: bool = False

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise UserError(
                f"unknown protocol '{self.protocol}': use one of {', '.join(PROTOCOLS)}"
            )

    @property
    def losses(self) -> LossConfig:
        """The loss terms this model can train: no segmentation term without an ATM head."""
        if self.model.part_aware:
            return self.train.losses
        return dataclasses.replace(self.train.losses, segmentation=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        model = model_spec(data["model"])
        if model.frozen:
            raise UserError(
                f"model {model.arch} is frozen: it is used as it is, not trained; "
                "`reid freeze` writes its model directory"
            )
        return cls(
            model=model,
            train=TrainSettings.from_dict(data["train"]),
            protocol=data["protocol"],
            flip_test=bool(data.get("flip_test", False)),
        )

    @classmethod
    def load(cls, path: Path | None = None, text: str | None = None) -> RunSettings:
        """Read from a JSON file or a JSON string (exactly one of them)."""
        if path is not None:
            if not path.is_file():
                raise UserError(f"settings file {path} does not exist")
            text = path.read_text()
        try:
            return cls.from_dict(json.loads(text or ""))
        except json.JSONDecodeError as error:
            raise UserError(f"settings are not valid JSON ({error})") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
