"""Train a registered model on folders of images, with checkpoints that resume exactly.

Each "epoch" is a fixed number of steps (patches are sampled, not enumerated);
after each one the run validates with the standard protocol, appends a row to
``log.csv``, and writes ``checkpoint.pt`` (tensors and plain data only, loaded
with ``weights_only=True``), ``model.safetensors`` (the shippable weights) and, whenever
validation improves, ``best.safetensors`` (so a late loss spike cannot cost the best weights).
A stop asked for between epochs (Ctrl-C, SIGTERM) checkpoints the current step.
Under torchrun (see :mod:`superres.training.distributed`) rank 0 alone writes; ``run.json``
records each segment of the run with its number of processes.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from superres.atomic import replacing
from superres.engine.devices import check_gpu_precision
from superres.engine.evaluation import evaluate, load_references
from superres.engine.inference import Upscaler
from superres.engine.runtime import cpu_has_native_bf16
from superres.errors import SuperresError
from superres.models import LoadedModel, create_model, load_weights_file, save_weights
from superres.models.registry import ARCHITECTURES
from superres.quality.realistic import TRACKS, RealisticConfig, Track, preset, track
from superres.training.adversarial import Adversary
from superres.training.data import PatchSampler, training_files
from superres.training.distillation import Teacher
from superres.training.distributed import World

CHECKPOINT = "checkpoint.pt"
WEIGHTS = "model.safetensors"
BEST_WEIGHTS = "best.safetensors"
LOG = "log.csv"
RUN = "run.json"
LOG_FIELDS = ["epoch", "step", "loss", "val_psnr", "val_ssim", "lr", "seconds"]
Loss = Literal["l1", "mse"]
TrainPrecision = Literal["fp32", "bf16"]  # fp16 would need loss scaling: not offered
LOSSES: tuple[Loss, ...] = ("l1", "mse")
TRAIN_PRECISIONS: tuple[TrainPrecision, ...] = ("fp32", "bf16")
# "clean" is the bicubic degradation itself.
TRAINING_TRACKS = tuple(name for name in TRACKS if name != "clean")
# Settings a resumed run may change: more steps extend it (the cosine is recomputed); the
# precision is arithmetic only (a bf16 run resumed on a CPU without native bf16 goes on in fp32);
# gradient clipping may be switched on for a run that spiked.
EXTENDABLE = ("steps", "precision", "clip_grad")


@dataclass
class TrainConfig:
    model: str
    scale: int
    train: list[str]
    val: str | None = None
    steps: int = 20_000
    epoch_steps: int = 1_000
    batch_size: int = 16  # the global batch: split over the processes under torchrun
    patch_size: int = 48  # high-resolution pixels; must be a multiple of scale
    lr: float = 1e-3
    loss: Loss = "l1"
    seed: int = 0
    pool_megapixels: float = 64.0
    precision: TrainPrecision = "fp32"
    hyper: dict = field(default_factory=dict)
    init: str | None = None  # weights file to start from (fine-tuning), same model, any scale
    # or "realistic" (the second-order real-world model), or one fixed track (jpeg50, ...)
    degradation: str = "bicubic"
    degradation_preset: str = "standard"
    val_track: str = "clean"  # the fixed degradation validation scores on
    rescales: list[float] = field(default_factory=lambda: [1.0])  # scale augmentation
    # Share of patches made black-and-white before degrading (RGB models; see PatchSampler).
    grey: float = 0.0
    # Decay of an exponential moving average of the weights, which validation scores and the
    # exported weights are (Real-ESRGAN uses 0.999); 0: the weights as trained.
    ema: float = 0.0
    # An adversarial fine-tune (see superres.training.adversarial): weights of the GAN loss
    # and of feature matching, added to the pixel loss; 0 and 0: none (no discriminator).
    adversarial: float = 0.0
    feature_matching: float = 0.0
    # Largest global gradient norm a step may take (rescaled above it); 0: no clipping. Deep
    # residual networks at a high learning rate can take one huge step that undoes hours.
    clip_grad: float = 0.0
    # Distillation (see superres.training.distillation): the loss is (1 - distill) times the
    # loss against the ground truth plus distill times the loss against the self-ensemble
    # (teacher_ensemble views) of the weights file ``teacher``; 0: no teacher.
    distill: float = 0.0
    teacher: str | None = None
    teacher_ensemble: int = 8


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


class TrainingInterrupted(SuperresError):
    """A stop asked for (Ctrl-C, SIGTERM) and honoured: the current step is checkpointed."""

    def __init__(self, step: int, run_dir: Path) -> None:
        super().__init__(
            f"stopped at step {step}: checkpoint saved; continue with "
            f"`superres train -o {run_dir} --resume`"
        )
        self.step = step


class TrainingDiverged(SuperresError):
    """The loss stopped being a number: nothing is saved, so the last checkpoint stays good."""

    def __init__(self, step: int, run_dir: Path, saved_step: int | None) -> None:
        saved = (
            f"the checkpoint in {run_dir} (step {saved_step}) is intact; resume it with "
            "`--resume --precision fp32`, or train again with a lower --lr"
            if saved_step is not None
            else "no checkpoint was written; train again with a lower --lr"
        )
        super().__init__(f"the loss became non-finite at step {step}; {saved}")
        self.step = step


def _loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    raise SuperresError(f"unknown loss {name!r}; choose {' or '.join(LOSSES)}")


def _check_precision(precision: str, device: torch.device) -> None:
    """A typo must not silently train in fp32."""
    if precision not in TRAIN_PRECISIONS:
        raise SuperresError(
            f"unknown precision {precision!r}; choose {' or '.join(TRAIN_PRECISIONS)}"
        )
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        # Emulated bf16 is 5-10x slower than fp32 (measured: an AVX2-only EPYC), not faster.
        raise SuperresError("--precision bf16 needs a CPU with AVX512-BF16 or AMX; use fp32")
    check_gpu_precision(precision, device)


def _defaults() -> dict[str, Any]:
    """TrainConfig's defaults, for checkpoints written before a setting existed."""
    values = {}
    for item in fields(TrainConfig):
        if item.default is not MISSING:
            values[item.name] = item.default
        elif item.default_factory is not MISSING:
            values[item.name] = item.default_factory()
    return values


def _comparable(key: str, value: Any) -> Any:
    """Paths compared as resolved paths; everything else as JSON would store it."""
    if key in ("train", "val", "init", "teacher") and value is not None:
        paths = value if isinstance(value, list) else [value]
        return [str(Path(path).resolve()) for path in paths]
    return json.loads(json.dumps(value))


def _same_family(found_name: str, wanted_name: str) -> bool:
    """Whether two architecture names build the same network class with the same inputs
    (``compact`` and ``large`` do: ``large`` is ``compact`` made deeper)."""
    builds = [ARCHITECTURES[name].build for name in (found_name, wanted_name)]
    return found_name == wanted_name or builds[0] is builds[1]


def _growing(found: tuple[str, dict], wanted: tuple[str, dict]) -> bool:
    """Whether ``wanted`` is ``found`` with more residual blocks or channels (neither fewer)
    and nothing else changed."""
    (found_name, found_hyper), (wanted_name, wanted_hyper) = found, wanted
    grows = ("blocks", "width")
    if not _same_family(found_name, wanted_name) or any(
        not isinstance(found_hyper.get(key), int) for key in grows
    ):
        return False
    sizes = [(found_hyper[key], wanted_hyper.get(key, 0)) for key in grows]
    return all(old <= new for old, new in sizes) and {
        key: value for key, value in found_hyper.items() if key not in grows
    } == {key: value for key, value in wanted_hyper.items() if key not in grows}


def config_changes(saved: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """``{setting: (saved value, new value)}`` for every setting ``config`` changes."""
    before = {**_defaults(), **saved}
    return {
        key: (before.get(key), value)
        for key, value in asdict(config).items()
        if _comparable(key, before.get(key)) != _comparable(key, value)
    }


def _read_checkpoint(run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    if not path.is_file():
        raise SuperresError(f"nothing to resume: {path} does not exist")
    return torch.load(path, weights_only=True, map_location="cpu")


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The settings a run's checkpoint was written with (the defaults of the time filled in)."""
    return {**_defaults(), **json.loads(_read_checkpoint(run_dir)["config"])}


def _optimizer(model: LoadedModel, lr: float) -> torch.optim.Optimizer:
    """Adam; layers a network marks as slow (SRCNN's last, as in the paper) learn at a tenth."""
    slow_names = getattr(model.network, "slow_layers", ())
    slow = [p for n, p in model.network.named_parameters() if n.split(".")[0] in slow_names]
    fast = [p for n, p in model.network.named_parameters() if n.split(".")[0] not in slow_names]
    groups = [{"params": fast, "lr_factor": 1.0}]
    if slow:
        groups.append({"params": slow, "lr_factor": 0.1})
    return torch.optim.Adam(groups, lr=lr)


def _degradation(config: TrainConfig) -> RealisticConfig | Track | None:
    if config.degradation != "realistic" and config.degradation_preset != "standard":
        raise SuperresError(
            f"a degradation preset applies to the realistic degradation only, "
            f"not to {config.degradation!r}"
        )
    if config.degradation == "bicubic":
        return None
    if config.degradation == "realistic":
        return preset(config.degradation_preset)
    if config.degradation in TRAINING_TRACKS:
        return track(config.degradation)
    raise SuperresError(
        f"unknown degradation {config.degradation!r}; "
        f"choose bicubic, realistic or a track: {', '.join(TRAINING_TRACKS)}"
    )


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """A kill at any moment leaves the old file or the new."""
    with replacing(path) as temporary, temporary.open("wb") as handle:
        write(handle)


class Trainer:
    """One process's part of a training run: all of it alone, or one rank's share of each
    batch under torchrun (``world``), on ``world.device``."""

    def __init__(self, config: TrainConfig, run_dir: Path, world: World | None = None) -> None:
        if config.steps < 1 or config.epoch_steps < 1 or config.batch_size < 1:
            raise SuperresError("steps, epoch steps and batch size must be positive")
        if not 0.0 <= config.ema < 1.0:
            raise SuperresError(f"the weight average's decay must be in [0, 1), got {config.ema}")
        if min(config.adversarial, config.feature_matching) < 0:
            raise SuperresError("the adversarial and feature-matching weights must be >= 0")
        if not 0.0 <= config.distill <= 1.0 or (config.distill > 0) != bool(config.teacher):
            raise SuperresError(
                f"distillation needs a --teacher and a --distill weight in (0, 1], got "
                f"{config.distill} and {config.teacher or 'no teacher'}"
            )
        self.config = config
        self.run_dir = run_dir
        self.world = world or World()
        self.device = self.world.device
        self.loss_fn = _loss_fn(config.loss)
        _check_precision(config.precision, self.device)
        self.share = self.world.share(config.batch_size)
        torch.manual_seed(config.seed)  # the same initial weights in every process
        self.rng = np.random.default_rng(config.seed)
        self.model = create_model(config.model, config.scale, **config.hyper)
        self.fresh_tensors: list[str] = []  # not taken from --init (another scale's tail)
        if config.init:
            self._start_from(Path(config.init))
        self.network = self.model.network.to(self.device, memory_format=torch.channels_last)
        self.parallel = self.world.wrap(self.network)
        self.teacher = (
            Teacher(
                Path(config.teacher),
                config.scale,
                self.model.channels,
                config.teacher_ensemble,
                self.device,
                bf16=config.precision == "bf16",
            )
            if config.teacher
            else None
        )
        self.optimizer = _optimizer(self.model, config.lr)
        self.average = (
            [p.detach().clone() for p in self.network.parameters()] if config.ema else None
        )
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
            rescales=tuple(config.rescales),
            grey=config.grey,
        )
        track(config.val_track)  # an unknown track fails before any training
        self.validation = load_references(Path(config.val)) if config.val else []
        self.step = 0
        self.best_psnr: float | None = None
        self.seconds = 0.0  # training time before this process started (resumed runs)
        self.saved_step: int | None = None  # of the checkpoint on disk, once there is one
        self.losses: list[float] = []  # of the epoch under way, kept across a stop
        # Made last, so that runs without it draw the same random numbers as before it existed.
        self.adversary = (
            Adversary(
                self.model.channels,
                self.world,
                config.adversarial,
                config.feature_matching,
                bf16=config.precision == "bf16",
            )
            if config.adversarial or config.feature_matching
            else None
        )

    def _start_from(self, path: Path) -> None:
        """Fine-tune from trained weights of the same architecture and hyper-parameters. From
        another scale, every tensor whose name and shape match is taken (the features) and the
        rest (the scale-specific tail) starts fresh: a x4 model's features start a x2 one. A
        compact network may also start from a smaller one (more ``blocks`` or ``width``, all
        else equal; a ``large`` one from a ``compact`` one)."""
        start = load_weights_file(path)
        found = (start.name, json.loads(start.metadata.get("hyper", "{}")))
        wanted = (self.model.name, json.loads(self.model.metadata["hyper"]))
        state = start.network.state_dict()
        if found != wanted and _growing(found, wanted):
            state = self.model.network.grown(state, found[1]["blocks"])
        elif found != wanted:
            raise SuperresError(f"{path} holds {found}, not {wanted}: cannot start from it")
        own = self.model.network.state_dict()
        taken = {
            name: tensor
            for name, tensor in state.items()
            if name in own and own[name].shape == tensor.shape
        }
        self.model.network.load_state_dict(taken, strict=False)
        self.fresh_tensors = sorted(set(own) - set(taken))

    # --- checkpoints -------------------------------------------------------------------
    def save_checkpoint(self, seconds: float) -> None:
        """Everything a resume needs, written by rank 0 (all ranks hold the same state)."""
        state = {
            "step": self.step,
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(self.rng.bit_generator.state),
            "pool": list(self.sampler.pool_indices),
            "config": json.dumps(asdict(self.config)),
            "best_psnr": self.best_psnr,
            "seconds": seconds,
            "epoch_losses": list(self.losses),
            "world_size": self.world.size,
            "average": self.average,
            "adversary": self.adversary.state_dict() if self.adversary else None,
        }
        _atomic_write(self.run_dir / CHECKPOINT, lambda handle: torch.save(state, handle))
        self.saved_step = self.step

    def resume(self) -> None:
        """Continue from the checkpoint, with any number of processes; refuses a config that
        changes anything but :data:`EXTENDABLE` settings, naming what differs."""
        state = _read_checkpoint(self.run_dir)
        changes = {
            key: change
            for key, change in config_changes(json.loads(state["config"]), self.config).items()
            if key not in EXTENDABLE
        }
        if changes:
            listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
            raise SuperresError(
                f"--resume: {self.run_dir} was started with other settings ({listed}); leave "
                "them out to continue it as started, or train into a new folder"
            )
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.average is not None:
            self.average = [tensor.to(self.device) for tensor in state["average"]]
        if self.adversary is not None:
            self.adversary.load_state_dict(state["adversary"])
        torch.set_rng_state(state["torch_rng"])
        self.rng.bit_generator.state = json.loads(state["numpy_rng"])
        self.sampler.restore_pool(state["pool"])
        self.step = self.saved_step = int(state["step"])
        self.best_psnr = state["best_psnr"]
        self.seconds = float(state.get("seconds", 0.0))
        self.losses = [float(v) for v in state.get("epoch_losses", [])]

    def truncate_log(self) -> int:
        """Drop log rows past the current step (a kill between the log and the checkpoint;
        a fresh run, at step 0, over an old log.csv); returns how many were dropped."""
        path = self.run_dir / LOG
        if not self.world.main or not path.is_file():
            return 0
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        try:
            kept = [row for row in rows if int(row["step"]) <= self.step]
        except (KeyError, TypeError, ValueError) as error:
            raise SuperresError(
                f"{path}: not a superres training log ({error!r}); move it out of the way"
            ) from None
        if len(kept) < len(rows):
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
            _atomic_write(path, lambda handle: handle.write(text.getvalue().encode()))
        return len(rows) - len(kept)

    def _record_segment(self) -> None:
        """Append this start (step, processes, device, batch per process) to run.json."""
        path = self.run_dir / RUN
        segments = []
        if self.step > 0 and path.is_file():
            try:
                segments = json.loads(path.read_text(encoding="utf-8")).get("segments", [])
            except (ValueError, AttributeError):  # damaged: the checkpoint is what matters
                segments = []
        segments.append(
            {
                "from_step": self.step,
                "world_size": self.world.size,
                "device": self.device.type,
                "batch_per_process": len(self.share),
                "global_batch": self.config.batch_size,
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        record = {"config": asdict(self.config), "segments": segments}
        text = json.dumps(record, indent=2) + "\n"
        _atomic_write(path, lambda handle: handle.write(text.encode()))

    # --- training ----------------------------------------------------------------------
    def train_step(self) -> float:
        lr = _cosine_lr(self.config, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_factor"]
        batch = self.sampler.batch(self.config.batch_size, self.step, self.share)
        low = torch.from_numpy(batch.low_res).to(self.device)
        low = low.contiguous(memory_format=torch.channels_last)
        high = torch.from_numpy(batch.high_res).to(self.device)
        self.network.train()
        bf16 = self.config.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            prediction = self.parallel(low)
        output = prediction.float()
        loss = self.loss_fn(output, high)
        if self.teacher is not None:
            weight = self.config.distill
            loss = (1 - weight) * loss + weight * self.loss_fn(output, self.teacher(low))
        if self.adversary is not None:
            loss = loss + self.adversary.generator_loss(output, high)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.clip_grad)
        self.optimizer.step()
        if self.adversary is not None:
            self.adversary.step(output, high, lr)
        if self.average is not None:
            with torch.no_grad():
                for average, weight in zip(self.average, self.network.parameters(), strict=True):
                    average.lerp_(weight, 1.0 - self.config.ema)
        self.step += 1
        return loss.item()

    @contextmanager
    def _averaged_weights(self) -> Iterator[None]:
        """The weight average in the network for validation and export, then the trained
        weights back (training goes on from those)."""
        if self.average is None:
            yield
            return
        trained = [p.detach().clone() for p in self.network.parameters()]
        with torch.no_grad():
            for weight, average in zip(self.network.parameters(), self.average, strict=True):
                weight.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for weight, kept in zip(self.network.parameters(), trained, strict=True):
                    weight.copy_(kept)

    def validate(self) -> tuple[float | None, float | None]:
        if not self.validation:
            return None, None
        self.network.eval()
        upscaler = Upscaler(
            self.model, tile=1024, device=str(self.device), precision="fp32", backend="pytorch"
        )
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

    def _end_epoch(self, seconds: float) -> EpochReport:
        """Validate, log, export and checkpoint (rank 0); the loss is the mean over ranks."""
        loss = self.world.mean(float(np.mean(self.losses)))
        with self._averaged_weights():
            val_psnr, val_ssim = self.validate() if self.world.main else (None, None)
        report = EpochReport(
            epoch=math.ceil(self.step / self.config.epoch_steps),
            step=self.step,
            loss=loss,
            val_psnr=val_psnr,
            val_ssim=val_ssim,
            lr=_cosine_lr(self.config, self.step - 1),
            seconds=round(seconds, 1),
        )
        self.losses = []
        self.seconds = seconds
        if self.world.main:
            self._write_log(report)
            with self._averaged_weights():
                self._export(report)
            if val_psnr is not None and (self.best_psnr is None or val_psnr > self.best_psnr):
                self.best_psnr = val_psnr
                weights = (self.run_dir / WEIGHTS).read_bytes()
                _atomic_write(self.run_dir / BEST_WEIGHTS, lambda handle: handle.write(weights))
            self.save_checkpoint(seconds)
        return report

    def run(
        self,
        on_step: Callable[[int, float], None] | None = None,
        until: int | None = None,
        on_epoch: Callable[[EpochReport], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[EpochReport]:
        """Train to ``config.steps`` (or stop early at step ``until``), validating and
        checkpointing every epoch and at the stop, so a later :meth:`resume` continues exactly.
        ``should_stop`` is asked after every step; once it (in any process) says so, the step
        is checkpointed and :class:`TrainingInterrupted` raised in every process. A loss that
        is not finite raises :class:`TrainingDiverged` without saving anything.
        """
        stop = min(self.config.steps, until or self.config.steps)
        if self.world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.truncate_log()
            self._record_segment()
        reports = []
        started = time.monotonic() - self.seconds
        while self.step < stop:
            self.losses.append(self.train_step())
            # Checked before the epoch's end, so a diverged network never overwrites a checkpoint.
            if self.world.any(not math.isfinite(self.losses[-1])):
                raise TrainingDiverged(self.step, self.run_dir, self.saved_step)
            if on_step:
                on_step(self.step, self.losses[-1])
            if self.step % self.config.epoch_steps == 0 or self.step == stop:
                reports.append(self._end_epoch(time.monotonic() - started))
                if on_epoch and self.world.main:
                    on_epoch(reports[-1])
            if should_stop is not None and self.world.any(should_stop()):
                if self.world.main:
                    self.save_checkpoint(time.monotonic() - started)
                self.world.barrier()  # no process exits (ending torchrun's job) before it is saved
                raise TrainingInterrupted(self.step, self.run_dir)
        return reports
