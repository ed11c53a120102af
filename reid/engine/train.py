"""Training loop: PK batches, all PAW-ViT losses, periodic evaluation, atomic resumable checkpoints.

Runs the same on CPU, one GPU (bf16 autocast where the GPU has it) or several GPUs under
`torchrun` (DDP, one process per GPU; only rank 0 writes files and evaluates). Every epoch ends with a checkpoint in
`{out}/checkpoint/last.safetensors`; `resume=True` continues a killed run exactly where that
checkpoint left it: model, optimiser, sampler, RNG states and the history.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid.atomic import atomic_write_text
from reid.catalogue import read_catalogue
from reid.config import RunSettings, TrainSettings
from reid.data.crops import boxes_for
from reid.data.datasets import SeededBatches, TrainDataset
from reid.data.part_maps import load_part_maps
from reid.data.sampler import PKSampler
from reid.engine.checkpoint import (
    load_tensors,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_tensors,
)
from reid.engine.distributed import (
    DistContext,
    init_distributed,
    launch_context,
    resolve_device,
)
from reid.engine.extract import extract_descriptors, save_trained_model
from reid.engine.precision import autocast, resolve_precision
from reid.engine.schedule import lr_at
from reid.errors import UserError
from reid.evaluation import evaluate_features
from reid.losses import PawLoss
from reid.models import build_model, freeze_stem, stem_parameter_names
from reid.models.heads import ReidOutput
from reid.provenance import package_versions
from reid.weights import resolve_weights

_logger = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoint") / "last.safetensors"
BEST_WEIGHTS = Path("checkpoint") / "best.safetensors"
HISTORY = "history.csv"


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class TrainInputs:
    """Where a training run reads from and writes to."""

    catalogue: Path
    root: Path
    masks: Path
    out: Path


def primary_metric(metrics: dict[str, Any]) -> float:
    """The number model selection maximises: mmAP for ATRW, mAP otherwise."""
    return float(metrics["mmAP"] if "mmAP" in metrics else metrics["mAP"])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """One training run; construct, then call :meth:`fit`."""

    def __init__(
        self,
        settings: RunSettings,
        inputs: TrainInputs,
        device: str = "auto",
        workers: int = 2,
        progress: bool = True,
    ) -> None:
        self.settings = settings
        self.inputs = inputs
        self.ctx: DistContext = launch_context()
        self.device = resolve_device(device, self.ctx)
        init_distributed(self.ctx, self.device)
        self.precision = resolve_precision(settings.train.precision, self.device)
        self.workers = workers
        self.progress = progress and self.ctx.is_main
        train = settings.train
        catalogue = read_catalogue(inputs.catalogue)
        self.catalogue = catalogue
        rows = catalogue[catalogue["split"] == "train"]
        if rows.empty:
            raise UserError(
                f"{inputs.catalogue} has no rows with split 'train': nothing to train on"
            )
        self.maps = load_part_maps(inputs.masks)
        keep = self.maps.select(list(rows["image_id"]), train.skip_missing_maps)
        rows = rows[rows["image_id"].isin(set(keep))]
        spec = settings.model
        self.dataset = TrainDataset(
            rows,
            inputs.root,
            self.maps,
            img_size=spec.img_size,
            mask_size=spec.resolved_mask_size,
            rotation=train.rotation,
            flip_as_new_identity=train.flip_as_new_identity,
            normalisation=spec.normalisation,
            erasing=train.erasing,
            min_crop_area=train.min_crop_area,
            colour=train.colour,
        )
        torch.manual_seed(train.seed)  # identical initial weights on every rank
        self.model_core = build_model(spec, self.dataset.num_classes, self.maps.num_parts).to(
            self.device
        )
        losses = settings.losses
        self.loss = PawLoss(losses)
        all_used = losses.id and losses.orientation and (losses.segmentation or not spec.part_aware)
        # Frozen before DDP wraps the model: DDP reduces gradients of the parameters that
        # require them when it is built.
        self.frozen = freeze_stem(self.model_core, train.frozen_stem_blocks)
        self.model: nn.Module = self.model_core
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(
                self.model_core, device_ids=ids, find_unused_parameters=not all_used
            )
        self.optimizer = torch.optim.AdamW(self._param_groups(train), lr=train.lr)
        self.sampler = PKSampler(
            self.dataset.class_ids,
            p=train.identities_per_batch,
            k=train.images_per_identity,
            seed=train.seed,
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
        )
        self.batches = SeededBatches(self.sampler, train.seed, self.ctx.rank)
        self.loader = DataLoader(
            self.dataset,
            batch_sampler=self.batches,
            num_workers=workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        self.history: list[dict[str, Any]] = []
        self.best_metric = -math.inf
        self.best_epoch: int | None = None
        self.start_epoch = 0
        self.tensorboard = self._open_tensorboard() if self.ctx.is_main else None

    def _param_groups(self, train: TrainSettings) -> list[dict[str, Any]]:
        """timm's weight-decay groups (frozen parameters left out), each split once more so that
        a pretrained stem's parameters train at ``stem_lr_scale`` × the learning rate."""
        core = self.model_core
        no_decay = getattr(core, "no_weight_decay", lambda: set())()
        stem_names = stem_parameter_names(core)
        stem = {id(p) for n, p in core.named_parameters() if n in stem_names}
        groups = []
        for group in param_groups_weight_decay(
            core, train.weight_decay, no_weight_decay_list=set(no_decay)
        ):
            for in_stem, scale in ((False, 1.0), (True, train.stem_lr_scale)):
                params = [p for p in group["params"] if (id(p) in stem) == in_stem]
                if params:
                    groups.append({**group, "params": params, "lr_scale": scale})
        return groups

    # ----------------------------------------------------------------------------- checkpoints
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "sampler": self.sampler.state_dict(),
            "history": self.history,
            "best_metric": None if math.isinf(self.best_metric) else self.best_metric,
            "best_epoch": self.best_epoch,
            "settings": self.settings.to_dict(),
            "world_size": self.ctx.world_size,
        }

    def _gather_rng(self) -> list[torch.Tensor]:
        """Every rank's CPU (and CUDA) RNG state, so drop-path draws resume exactly."""
        state = torch.get_rng_state()
        if self.device.type == "cuda":
            state = torch.cat([state, torch.cuda.get_rng_state(self.device)])
        if not self.ctx.enabled:
            return [state]
        gathered: list[Any] = [None] * self.ctx.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def save_checkpoint(self, epoch: int) -> None:
        rng = self._gather_rng()
        if not self.ctx.is_main:
            return
        tensors = {f"model.{k}": v for k, v in self.model_core.state_dict().items()}
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors.update(opt_tensors)
        tensors.update({f"rng.{rank}": value for rank, value in enumerate(rng)})
        state = self._state(epoch)
        state["optimizer"] = opt_meta
        save_tensors(self.inputs.out / CHECKPOINT, tensors, state)

    def load_checkpoint(self) -> bool:
        """Restore an unfinished run of these settings; return whether one was restored.

        A checkpoint of other settings, or of a run that already finished, is not resumed: the
        run starts afresh (and overwrites it at the end of its first epoch). That is what a
        rerun means in the workflow, where `--resume` is always on: continue after a crash,
        train again after a change.
        """
        path = self.inputs.out / CHECKPOINT
        if not path.is_file():
            return False
        tensors, state = load_tensors(path)
        if state is None:
            raise UserError(f"{path} has no training state: delete it and rerun")
        if state["settings"] != self.settings.to_dict():
            _logger.warning("%s belongs to other settings: training afresh", path)
            return False
        if state["epoch"] + 1 >= self.settings.train.epochs:
            _logger.warning("%s is of a finished run: training again", path)
            return False
        if state["world_size"] != self.ctx.world_size:
            raise UserError(
                f"{path} was written by {state['world_size']} processes, this run has "
                f"{self.ctx.world_size}: resume with the same number of GPUs, or delete it"
            )
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model_core.load_state_dict(model_state)
        optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        rng = tensors[f"rng.{self.ctx.rank}"]
        cpu_size = torch.get_rng_state().numel()
        torch.set_rng_state(rng[:cpu_size])
        if self.device.type == "cuda" and rng.numel() > cpu_size:
            torch.cuda.set_rng_state(rng[cpu_size:], self.device)
        self.sampler.load_state_dict(state["sampler"])
        self.history = state["history"]
        self.best_metric = -math.inf if state["best_metric"] is None else state["best_metric"]
        self.best_epoch = state["best_epoch"]
        self.start_epoch = state["epoch"] + 1
        return True

    # ----------------------------------------------------------------------------- one epoch
    def _batch_losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        with autocast(self.device, self.precision):
            out: ReidOutput = self.model(batch["image"])
        as_float = lambda t: None if t is None else t.float()  # noqa: E731  (losses in fp32)
        return self.loss(
            descriptor=out.descriptor.float(),
            id_logits=as_float(out.id_logits),
            labels=batch["label"],
            orient_logits=as_float(out.orientation_logits),
            orient_targets=batch["orientation"],
            part_visibility=batch["visibility"] if out.atm_maps is not None else None,
            atm_maps=as_float(out.atm_maps),
            atm_logits=as_float(out.atm_logits),
            target_maps=batch["target_map"],
        )

    def train_epoch(self, epoch: int, lr: float) -> dict[str, float]:
        self.model.train()
        for module in self.frozen:  # frozen BatchNorm keeps its ImageNet statistics
            module.eval()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        self.sampler.set_epoch(epoch)
        self.batches.set_epoch(epoch)
        sums: dict[str, float] = {}
        steps = images = 0
        started = time.perf_counter()
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.settings.train.epochs}",
            disable=not self.progress,
            leave=False,
            mininterval=2.0,
        )
        for step, batch in enumerate(bar):
            losses = self._batch_losses(batch)
            total = losses["total"]
            if not self.ctx.all_true(bool(torch.isfinite(total)), self.device):
                detail = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                raise TrainingDiverged(
                    f"loss is not finite at epoch {epoch + 1}, step {step + 1} ({detail}): lower "
                    "train.optimizer.lr or check the part maps; the last good checkpoint is kept "
                    f"in {self.inputs.out / CHECKPOINT.parent}, continue with --resume"
                )
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            self.optimizer.step()
            steps += 1
            images += batch["image"].shape[0] * self.ctx.world_size
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            rate = images / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(
                {
                    **{k: f"{v / steps:.3f}" for k, v in sums.items()},
                    "lr": f"{lr:.2e}",
                    "img/s": f"{rate:.1f}",
                }
            )
        elapsed = time.perf_counter() - started
        row = {f"loss_{k}": v / max(steps, 1) for k, v in sums.items()}
        row.update(
            epoch=epoch + 1,
            lr=lr,
            steps=steps,
            images_per_s=images / max(elapsed, 1e-9),
            seconds=elapsed,
        )
        return row

    # ----------------------------------------------------------------------------- evaluation
    def evaluate(self) -> dict[str, Any]:
        """Metrics of the current weights on the dataset's test protocol (rank 0)."""
        protocol = self.settings.protocol
        splits = {"query", "gallery"} if protocol == "query-gallery" else {"test"}
        rows = self.catalogue[self.catalogue["split"].isin(splits)]
        if rows.empty:
            return {}
        features = extract_descriptors(
            self.model_core,
            [self.inputs.root / p for p in rows["path"]],
            self.settings.model.img_size,
            self.device,
            flip_test=self.settings.flip_test,
            workers=self.workers,
            precision=self.precision,
            normalisation=self.settings.model.normalisation,
            boxes=boxes_for(list(rows["image_id"]), self.maps.boxes),
        )
        result = evaluate_features(
            features, list(rows["image_id"]), self.catalogue, protocol, with_rankings=False
        )
        return result.metrics

    # ----------------------------------------------------------------------------- the run
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the last epoch and write model.safetensors + model.json; return model.json."""
        train = self.settings.train
        if resume and self.load_checkpoint():
            _logger.info("resuming after epoch %d", self.start_epoch)
        started = time.perf_counter()
        if self.ctx.is_main and train.eval_every > 0 and self.start_epoch == 0:
            # The untrained model's metrics, as epoch 0: what training has to beat.
            row = {"epoch": 0, **_flatten(self.evaluate())}
            self.history.append(row)
            self._log_row(row)
        for epoch in range(self.start_epoch, train.epochs):
            lr = lr_at(
                epoch,
                train.lr,
                train.epochs,
                train.warmup_epochs,
                train.warmup_start_lr,
                train.final_lr,
            )
            row = self.train_epoch(epoch, lr)
            last = epoch + 1 == train.epochs
            periodic = train.eval_every > 0 and (epoch + 1) % train.eval_every == 0
            if self.ctx.is_main and (periodic or last):
                metrics = self.evaluate()
                row.update(_flatten(metrics))
                if metrics and primary_metric(metrics) > self.best_metric:
                    self.best_metric, self.best_epoch = primary_metric(metrics), epoch + 1
                    if train.select == "best_on_test":
                        save_tensors(self.inputs.out / BEST_WEIGHTS, self.model_core.state_dict())
            self.history.append(row)
            if self.ctx.is_main:
                self._log_row(row)
            self.save_checkpoint(epoch)
            self.ctx.barrier()
        return self._finish(time.perf_counter() - started)

    def _finish(self, wall_time: float) -> dict[str, Any]:
        train = self.settings.train
        selected = train.epochs
        if train.select == "best_on_test" and self.best_epoch is not None:
            tensors, _ = load_tensors(self.inputs.out / BEST_WEIGHTS)
            self.model_core.load_state_dict(tensors)
            selected = self.best_epoch
        config = {
            "model": dataclasses.asdict(self.settings.model),
            "pretrained_weights": (
                resolve_weights(self.settings.model.pretrained).record
                if self.settings.model.pretrained
                else None
            ),
            "num_classes": self.dataset.num_classes,
            "num_parts": self.maps.num_parts,
            "part_names": self.maps.part_names,
            "teacher_id": self.maps.teacher_id,
            "crop": self.maps.crop,
            "settings": self.settings.to_dict(),
            "epochs": train.epochs,
            "selected_epoch": selected,
            "select": train.select,
            "seed": train.seed,
            "device": str(self.device),
            "precision": self.precision,
            "world_size": self.ctx.world_size,
            "train_wall_time_s": round(wall_time, 2),
            "versions": package_versions(),
        }
        if self.ctx.is_main:
            save_trained_model(self.inputs.out, self.model_core, config)
        self.ctx.barrier()
        return config

    def _open_tensorboard(self) -> Any:
        """A SummaryWriter in {out}/tensorboard when the tensorboard package is installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: the history CSV always has the same numbers
            return None
        return SummaryWriter(str(self.inputs.out / "tensorboard"))

    def _log_row(self, row: dict[str, Any]) -> None:
        _logger.info("epoch %d: %s", row["epoch"], _format_row(row))
        self._write_history()
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, row["epoch"])
            self.tensorboard.flush()

    def _write_history(self) -> None:
        columns: list[str] = []
        for row in self.history:
            columns += [k for k in row if k not in columns]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.history)
        atomic_write_text(self.inputs.out / HISTORY, buffer.getvalue())


def _flatten(metrics: dict[str, Any], prefix: str = "eval_") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}_"))
        elif isinstance(value, (int, float)):
            flat[f"{prefix}{key}"] = value
    return flat


def _format_row(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def read_history(out: Path) -> pd.DataFrame:
    """The per-epoch history CSV of a run (losses, learning rate, throughput, evaluations)."""
    return pd.read_csv(out / HISTORY)
