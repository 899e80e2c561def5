"""A real (tiny) training run: loss falls, checkpoints resume bit for bit, bad folders fail."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from skimage import data

from superres.errors import SuperresError
from superres.imageio.files import write_image
from superres.models import load_weights_file
from superres.training.trainer import CHECKPOINT, LOG, WEIGHTS, TrainConfig, Trainer


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    photo = data.astronaut()
    for index, (top, left) in enumerate([(0, 0), (200, 250), (300, 100)]):
        write_image(folder / f"crop{index}.png", photo[top : top + 96, left : left + 96])
    write_image(folder / "grey.png", data.camera()[100:196, 100:196])
    return folder


def _config(folder, **overrides) -> TrainConfig:
    settings = dict(
        model="compact",
        scale=2,
        train=[str(folder)],
        val=str(folder),
        steps=8,
        epoch_steps=4,
        batch_size=4,
        patch_size=24,
        lr=2e-3,
        seed=7,
        hyper={"width": 8, "blocks": 1},
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def test_loss_falls(tmp_path, image_folder):
    config = _config(image_folder, steps=60, epoch_steps=60, lr=5e-3)
    trainer = Trainer(config, tmp_path)
    losses = [trainer.train_step() for _ in range(60)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def test_run_writes_log_checkpoint_and_described_weights(tmp_path, image_folder):
    Trainer(_config(image_folder), tmp_path).run()
    rows = list(csv.DictReader((tmp_path / LOG).open()))
    assert [int(r["step"]) for r in rows] == [4, 8]
    assert all(float(r["val_psnr"]) > 15 for r in rows)
    assert (tmp_path / CHECKPOINT).is_file()
    model = load_weights_file(tmp_path / WEIGHTS)
    assert model.metadata["steps"] == "8"
    assert model.metadata["val_psnr"] == f"{float(rows[-1]['val_psnr']):.4f}"
    assert model.metadata["training_data"] == image_folder.name


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "degradation": "realistic",
            "val_track": "noise10-jpeg70",
            "model": "real",
            "hyper": {"width": 8, "blocks": 1},
        },
    ],
    ids=["bicubic", "realistic"],
)
def test_resume_is_bit_for_bit(tmp_path, image_folder, settings):
    straight = Trainer(_config(image_folder, **settings), tmp_path / "straight")
    straight.run()
    Trainer(_config(image_folder, **settings), tmp_path / "resumed").run(until=3)  # interrupted
    second = Trainer(_config(image_folder, **settings), tmp_path / "resumed")
    second.resume()
    assert second.step == 3
    second.run()
    for a, b in zip(
        straight.network.state_dict().values(), second.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_empty_or_missing_training_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SuperresError, match="no images"):
        Trainer(_config(tmp_path), tmp_path / "run")
    with pytest.raises(SuperresError, match="not found"):
        Trainer(_config(tmp_path / "nowhere"), tmp_path / "run")


def test_memory_is_bounded_by_the_pool(tmp_path, image_folder):
    trainer = Trainer(_config(image_folder, pool_megapixels=0.01), tmp_path)
    assert len(trainer.sampler.pool) == 1
    seen = set()
    for _ in range(12):
        trainer.train_step()
        seen.update(trainer.sampler.pool_indices)
        assert len(trainer.sampler.pool) == 1
    assert len(seen) > 1  # images stream through the pool


def test_cli_train_refuses_to_clobber_a_run_and_resumes(tmp_path, image_folder):
    from typer.testing import CliRunner

    from superres.apps.cli import app

    args = [
        "train",
        "--model",
        "compact",
        "--scale",
        "2",
        "--train",
        str(image_folder),
        "-o",
        str(tmp_path),
        "--steps",
        "4",
        "--epoch-steps",
        "2",
        "--batch-size",
        "2",
        "--patch-size",
        "24",
    ]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--resume" in str(again.exception or again.output)


def test_colour_models_train_on_rgb_patches(tmp_path, image_folder):
    config = _config(image_folder, model="autoencoder", hyper={"widths": [4, 4, 4]}, steps=2)
    trainer = Trainer(config, tmp_path)
    batch = trainer.sampler.batch(3)
    assert batch.low_res.shape == (3, 3, 12, 12) and batch.high_res.shape == (3, 3, 24, 24)
    # The grey photo becomes three equal planes, so colour and grey images mix in one batch.
    assert np.isfinite(trainer.train_step())


def test_init_starts_from_trained_weights_and_refuses_another_model(tmp_path, image_folder):
    first = Trainer(_config(image_folder), tmp_path / "first")
    first.run()
    tuned = Trainer(_config(image_folder, init=str(tmp_path / "first" / WEIGHTS)), tmp_path / "b")
    for a, b in zip(
        first.network.state_dict().values(), tuned.network.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = _config(
        image_folder, hyper={"width": 8, "blocks": 2}, init=str(tmp_path / "first" / WEIGHTS)
    )
    with pytest.raises(SuperresError, match="cannot start from it"):
        Trainer(other, tmp_path / "c")


def test_realistic_batches_differ_by_step_and_repeat_by_seed(image_folder, tmp_path):
    trainer = Trainer(_config(image_folder, degradation="realistic"), tmp_path)
    sampler = trainer.sampler
    state = sampler.rng.bit_generator.state
    first = sampler.batch(2, step=5)
    sampler.rng.bit_generator.state = state
    again = sampler.batch(2, step=5)
    sampler.rng.bit_generator.state = state
    other = sampler.batch(2, step=6)
    assert np.array_equal(first.low_res, again.low_res)
    assert np.array_equal(first.high_res, other.high_res)  # same crops, other degradation
    assert not np.array_equal(first.low_res, other.low_res)


def test_unknown_degradation_names_fail_before_training(tmp_path, image_folder):
    for settings in (
        {"degradation": "jpeg"},
        {"degradation": "realistic", "degradation_preset": "x"},
        {"val_track": "x"},
    ):
        with pytest.raises(SuperresError):
            Trainer(_config(image_folder, **settings), tmp_path)
