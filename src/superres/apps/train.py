"""What ``superres train`` does around the Trainer: settings, progress, signals, torchrun.

Options left out of a ``--resume`` come from the run's checkpoint, so a run continues as it
was started; one given with another value is refused by the Trainer, naming it. Progress is a
bar on a terminal and plain lines elsewhere (nohup, CI, torchrun's pipes). Ctrl-C or SIGTERM
finishes the step, checkpoints it and says how to resume.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from superres.apps.report.tables import format_number
from superres.errors import SuperresError
from superres.training.distributed import World, join_world, leave_world
from superres.training.trainer import (
    BEST_WEIGHTS,
    CHECKPOINT,
    WEIGHTS,
    EpochReport,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    saved_config,
)

PLAIN_LINES_PER_EPOCH = 10  # progress lines per epoch when stderr is not a terminal


class StopRequest:
    """Set by SIGINT or SIGTERM; the training loop checks it after every step.

    Alone, a second Ctrl-C aborts without saving. Under torchrun every process gets the
    signal twice (from the terminal and from torchrun), so repeats are ignored there: torchrun
    itself kills processes that have not finished some 30 s later.
    """

    def __init__(self, world: World, say: Console) -> None:
        self.world = world
        self.say = say
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def _handle(self, number: int, _frame: FrameType | None) -> None:
        if self.signal is not None:
            if self.world.size == 1:
                raise KeyboardInterrupt
            return
        self.signal = number
        if self.world.main:
            again = " (Ctrl-C again aborts without saving)" if self.world.size == 1 else ""
            self.say.print(f"stopping after this step to save a checkpoint{again}")

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        previous = {n: signal.signal(n, self._handle) for n in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _config(given: dict[str, Any], output: Path, saved: dict[str, Any] | None) -> TrainConfig:
    """The settings given on the command line, over the checkpoint's (``saved``) on a resume."""
    if saved is not None:
        known = {item.name for item in fields(TrainConfig)}
        return TrainConfig(**{**{k: v for k, v in saved.items() if k in known}, **given})
    if (output / CHECKPOINT).exists():
        raise SuperresError(f"{output} already holds a run: pass --resume or choose another folder")
    missing = [f"--{name}" for name in ("model", "scale", "train") if name not in given]
    if missing:
        raise SuperresError(f"{', '.join(missing)} needed to start a run (or --resume one)")
    return TrainConfig(**given)


def epoch_line(report: EpochReport) -> str:
    psnr = format_number(report.val_psnr, 2)
    return (
        f"epoch {report.epoch}: step {report.step}, loss {report.loss:.5f}, val PSNR {psnr}, "
        f"{report.seconds:.0f} s"
    )


class PlainProgress:
    """Progress as lines, a few per epoch, for logs that are not terminals."""

    def __init__(self, say: Console, total: int, every: int, first: int) -> None:
        self.say, self.total, self.every = say, total, every
        self.first, self.started = first, time.monotonic()

    def __call__(self, step: int, loss: float) -> None:
        if step % self.every and step != self.total:
            return
        rate = (step - self.first) / max(time.monotonic() - self.started, 1e-9)
        left = round((self.total - step) / rate) if rate else 0
        self.say.print(
            f"step {step}/{self.total}: loss {loss:.5f}, {rate:.2f} steps/s, "
            f"{left // 3600}:{left % 3600 // 60:02d}:{left % 60:02d} left",
            highlight=False,
        )


def run_training(
    given: dict[str, Any],
    output: Path,
    resume: bool,
    device: str,
    threads: int | None,
    out: Console,
    err: Console,
) -> None:
    """``superres train``: one process, or one rank of a torchrun job."""
    if threads:
        torch.set_num_threads(threads)
    world = join_world(device)
    try:
        saved = saved_config(output) if resume else None
        config = _config(given, output, saved)
        trainer = Trainer(config, output, world)
        if saved is not None:
            trainer.resume()
            if world.main and saved["steps"] != config.steps:
                was = saved["steps"]
                out.print(f"continuing to {config.steps} steps (was {was}): new cosine decay")
        dropped = trainer.truncate_log()
        if dropped:
            out.print(f"log.csv: dropped {dropped} row(s) after step {trainer.step}")
        if world.main:
            _announce(out, trainer)
        _train(trainer, world, err)
        if world.main:
            best = f" (best validation: {output / BEST_WEIGHTS})" if trainer.best_psnr else ""
            out.print(f"weights: {output / WEIGHTS}{best}", highlight=False)
    finally:
        leave_world()


def _announce(out: Console, trainer: Trainer) -> None:
    config, world = trainer.config, trainer.world
    where = f"{world.size} processes" if world.size > 1 else "1 process"
    share = f" ({len(trainer.share)} per process)" if world.size > 1 else ""
    out.print(
        f"{config.model} x{config.scale} on {where} ({world.device}): "
        f"global batch {config.batch_size}{share}",
        highlight=False,
    )
    if trainer.fresh_tensors and trainer.step == 0:
        out.print(f"from --init, except (fresh): {', '.join(trainer.fresh_tensors)}")


def _train(trainer: Trainer, world: World, err: Console) -> None:
    """Run with progress on rank 0; a stop becomes one line and exit status 128 + signal."""
    stop = StopRequest(world, err)
    config = trainer.config
    terminal = err.is_terminal and world.main
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.5f}"),
        TimeRemainingColumn(),
    ]
    with stop.installed(), Progress(*columns, console=err, disable=not terminal) as progress:
        task = progress.add_task(
            f"{config.model} x{config.scale}", total=config.steps, completed=trainer.step, loss=0.0
        )
        if terminal:

            def on_step(step: int, loss: float) -> None:
                progress.update(task, completed=step, loss=loss)
        elif world.main:
            every = max(1, config.epoch_steps // PLAIN_LINES_PER_EPOCH)
            on_step = PlainProgress(err, config.steps, every, trainer.step)
        else:
            on_step = None
        try:
            trainer.run(
                on_step=on_step,
                on_epoch=lambda report: progress.console.print(epoch_line(report), highlight=False),
                should_stop=stop,
            )
        except TrainingInterrupted as stopped:
            if world.main:
                err.print(str(stopped), highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(128 + (stop.signal or signal.SIGINT)) from None
