"""Train a registered model on folders of images, with checkpoints that resume exactly.

Each "epoch" is a fixed number of steps (patches are sampled, not enumerated);
after each one the run validates with the standard protocol, appends a row to
``log.csv``, and writes ``checkpoint.pt`` (tensors and plain data only, loaded
with ``weights_only=True``) and ``model.safetensors`` (the shippable weights).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from superres.engine.evaluation import evaluate, load_references
from superres.engine.inference import Upscaler
from superres.errors import SuperresError
from superres.models import LoadedModel, create_model, load_weights_file, save_weights
from superres.quality.realistic import RealisticConfig, preset, track
from superres.training.data import PatchSampler, training_files

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
LOG = "log.csv"
LOG_FIELDS = ["epoch", "step", "loss", "val_psnr", "val_ssim", "lr", "seconds"]


@dataclass
class TrainConfig:
    model: str
    scale: int
    train: list[str]
    val: str | None = None
    steps: int = 20_000
    epoch_steps: int = 1_000
    batch_size: int = 16
    patch_size: int = 48  # high-resolution pixels; must be a multiple of scale
    lr: float = 1e-3
    loss: str = "l1"
    seed: int = 0
    pool_megapixels: float = 64.0
    precision: str = "fp32"
    hyper: dict = field(default_factory=dict)
    init: str | None = None  # weights file to start from (fine-tuning), same model and scale
    degradation: str = "bicubic"  # or "realistic": the second-order real-world model
    degradation_preset: str = "standard"
    val_track: str = "clean"  # the fixed degradation validation scores on


@dataclass
class EpochReport:
    epoch: int
    step: int
    loss: float
    val_psnr: float | None
    val_ssim: float | None
    lr: float
    seconds: float


def _cosine_lr(config: TrainConfig, step: int) -> float:
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def _loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    raise SuperresError(f"unknown loss {name!r}; choose l1 or mse")


def _optimizer(model: LoadedModel, lr: float) -> torch.optim.Optimizer:
    """Adam; layers a network marks as slow (SRCNN's last, as in the paper) learn at a tenth."""
    slow_names = getattr(model.network, "slow_layers", ())
    slow = [p for n, p in model.network.named_parameters() if n.split(".")[0] in slow_names]
    fast = [p for n, p in model.network.named_parameters() if n.split(".")[0] not in slow_names]
    groups = [{"params": fast, "lr_factor": 1.0}]
    if slow:
        groups.append({"params": slow, "lr_factor": 0.1})
    return torch.optim.Adam(groups, lr=lr)


def _degradation(config: TrainConfig) -> RealisticConfig | None:
    if config.degradation == "bicubic":
        return None
    if config.degradation == "realistic":
        return preset(config.degradation_preset)
    raise SuperresError(f"unknown degradation {config.degradation!r}; choose bicubic or realistic")


def _atomic_save(obj: object, path: Path) -> None:
    temp = path.with_name(f".{path.name}.part")
    torch.save(obj, temp)
    os.replace(temp, path)


class Trainer:
    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        if config.steps < 1 or config.epoch_steps < 1 or config.batch_size < 1:
            raise SuperresError("steps, epoch steps and batch size must be positive")
        self.config = config
        self.run_dir = run_dir
        self.loss_fn = _loss_fn(config.loss)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.model = create_model(config.model, config.scale, **config.hyper)
        if config.init:
            self._start_from(Path(config.init))
        self.network = self.model.network.to(memory_format=torch.channels_last)
        self.optimizer = _optimizer(self.model, config.lr)
        files = training_files([Path(p) for p in config.train])
        self.sampler = PatchSampler(
            files,
            config.scale,
            config.patch_size,
            self.rng,
            config.pool_megapixels,
            channels=self.model.channels,
            degradation=_degradation(config),
            seed=config.seed,
        )
        track(config.val_track)  # an unknown track fails before any training
        self.validation = load_references(Path(config.val)) if config.val else []
        self.step = 0
        self.best_psnr: float | None = None

    def _start_from(self, path: Path) -> None:
        """Fine-tune: the same architecture, scale and hyper-parameters, trained weights."""
        start = load_weights_file(path)
        found = (start.name, start.scale, json.loads(start.metadata.get("hyper", "{}")))
        wanted = (self.model.name, self.model.scale, json.loads(self.model.metadata["hyper"]))
        if found != wanted:
            raise SuperresError(f"{path} holds {found}, not {wanted}: cannot start from it")
        self.model.network.load_state_dict(start.network.state_dict())

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        state = {
            "step": self.step,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "pool": list(self.sampler.pool_indices),
            "config": json.dumps(asdict(self.config)),
            "best_psnr": self.best_psnr,
        }
        _atomic_save(state, self.run_dir / CHECKPOINT)

    def resume(self) -> None:
        path = self.run_dir / CHECKPOINT
        if not path.is_file():
            raise SuperresError(f"nothing to resume: {path} does not exist")
        state = torch.load(path, weights_only=True)
        saved = json.loads(state["config"])
        if saved["model"] != self.config.model or saved["scale"] != self.config.scale:
            raise SuperresError(
                f"{path} is a {saved['model']} x{saved['scale']} run, "
                f"not {self.config.model} x{self.config.scale}"
            )
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.sampler.restore_pool(state["pool"])
        self.step = int(state["step"])
        self.best_psnr = state["best_psnr"]

    # --- training ----------------------------------------------------------------------
    def train_step(self) -> float:
        lr = _cosine_lr(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_factor"]
        batch = self.sampler.batch(self.config.batch_size, self.step)
        low = torch.from_numpy(batch.low_res).contiguous(memory_format=torch.channels_last)
        high = torch.from_numpy(batch.high_res)
        self.network.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.config.precision == "bf16"):
            prediction = self.network(low)
        loss = self.loss_fn(prediction.float(), high)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item()

    def validate(self) -> tuple[float | None, float | None]:
        if not self.validation:
            return None, None
        self.network.eval()
        upscaler = Upscaler(self.model, tile=1024, precision="fp32", backend="pytorch")
        result = evaluate(
            upscaler.upscale, self.validation, self.config.scale, degradation=self.config.val_track
        )
        return result.psnr, result.ssim

    def _write_log(self, report: EpochReport) -> None:
        path = self.run_dir / LOG
        new = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(asdict(report))

    def _export(self, report: EpochReport) -> None:
        self.model.metadata.update(
            {
                "training_data": ", ".join(Path(p).name for p in self.config.train),
                "validation_data": Path(self.config.val).name if self.config.val else "",
                "steps": str(self.step),
                "val_psnr": f"{report.val_psnr:.4f}" if report.val_psnr is not None else "",
                "val_ssim": f"{report.val_ssim:.4f}" if report.val_ssim is not None else "",
                "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                "training": json.dumps(
                    {k: v for k, v in asdict(self.config).items() if k not in ("train", "val")}
                ),
            }
        )
        save_weights(self.run_dir / WEIGHTS, self.model)

    def run(
        self,
        on_step: Callable[[int, float], None] | None = None,
        until: int | None = None,
        on_epoch: Callable[[EpochReport], None] | None = None,
    ) -> list[EpochReport]:
        """Train to ``config.steps`` (or stop early at step ``until``), validating and
        checkpointing every epoch and at the stop, so a later :meth:`resume` continues exactly.
        """
        stop = min(self.config.steps, until or self.config.steps)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        reports = []
        started = time.monotonic()
        losses: list[float] = []
        while self.step < stop:
            losses.append(self.train_step())
            if on_step:
                on_step(self.step, losses[-1])
            if self.step % self.config.epoch_steps and self.step < stop:
                continue
            val_psnr, val_ssim = self.validate()
            report = EpochReport(
                epoch=math.ceil(self.step / self.config.epoch_steps),
                step=self.step,
                loss=float(np.mean(losses)),
                val_psnr=val_psnr,
                val_ssim=val_ssim,
                lr=_cosine_lr(self.config, self.step - 1),
                seconds=round(time.monotonic() - started, 1),
            )
            losses = []
            self._write_log(report)
            self._export(report)
            self.save_checkpoint()
            reports.append(report)
            if on_epoch:
                on_epoch(report)
        return reports
