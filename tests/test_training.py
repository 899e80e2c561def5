"""A real (tiny) training run: loss falls, checkpoints resume bit for bit, bad folders fail."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from helpers import tiny_config
from skimage import data

from superres.errors import ModelError, SuperresError
from superres.imageio.files import write_image
from superres.models import create_model, load_weights_file, save_weights
from superres.training.adversarial import BlurHalving, UNetDiscriminator
from superres.training.trainer import (
    BEST_WEIGHTS,
    CHECKPOINT,
    LOG,
    WEIGHTS,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    photo = data.astronaut()
    for index, (top, left) in enumerate([(0, 0), (200, 250), (300, 100)]):
        write_image(folder / f"crop{index}.png", photo[top : top + 96, left : left + 96])
    write_image(folder / "grey.png", data.camera()[100:196, 100:196])
    return folder


_config = tiny_config


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
        {"ema": 0.9, "rescales": [0.5, 1.0]},
        {"adversarial": 0.1, "feature_matching": 1.0},
    ],
    ids=["bicubic", "realistic", "average-rescaled", "adversarial"],
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


def test_adversarial_fine_tune_trains_a_discriminator_and_exports_the_generator_alone(
    tmp_path, image_folder
):
    """The GAN and feature-matching terms change what the generator learns; the discriminator
    is in the checkpoint (for resuming) and nowhere in the shipped weights."""
    plain = Trainer(_config(image_folder), tmp_path / "plain")
    plain.run()
    sharp = Trainer(_config(image_folder, adversarial=0.1, feature_matching=1.0), tmp_path / "gan")
    sharp.run()
    plain_weights = load_weights_file(tmp_path / "plain" / WEIGHTS).network.state_dict()
    sharp_weights = load_weights_file(tmp_path / "gan" / WEIGHTS).network.state_dict()
    assert sharp_weights.keys() == plain_weights.keys()
    assert any(not torch.equal(sharp_weights[k], plain_weights[k]) for k in plain_weights)
    saved = torch.load(tmp_path / "gan" / CHECKPOINT, weights_only=True)
    assert saved["adversary"]["network"].keys() == sharp.adversary.discriminator.state_dict().keys()
    assert torch.load(tmp_path / "plain" / CHECKPOINT, weights_only=True)["adversary"] is None
    with pytest.raises(SuperresError, match="feature-matching weights must be >= 0"):
        Trainer(_config(image_folder, adversarial=-0.1), tmp_path / "never")


def test_discriminator_judges_every_pixel_of_any_size():
    discriminator = UNetDiscriminator(channels=3, width=4)
    logits, features = discriminator(torch.rand(2, 3, 27, 41))
    assert logits.shape == (2, 1, 27, 41) and len(features) == 6


def test_discriminator_halvings_keep_flat_areas_and_remove_the_stride_period():
    """A checkerboard (the period a stride-2 layer sends back) has no response; flat stays."""
    halving = BlurHalving(channels=2)
    flat = torch.full((1, 2, 16, 16), 0.5)
    assert torch.allclose(halving(flat), torch.full((1, 2, 8, 8), 0.5))
    rows, cols = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    checker = ((rows + cols) % 2 * 2 - 1).float().expand(1, 2, 16, 16)
    assert halving(checker).abs().max() < 1e-6
    ramp = cols.float().expand(1, 2, 16, 16)
    assert halving(ramp).abs().max() > 1  # not a layer that outputs zeros


def test_weight_average_is_what_validation_scores_and_the_weights_file_holds(
    tmp_path, image_folder
):
    decay = 0.75
    trainer = Trainer(_config(image_folder, ema=decay, steps=3, epoch_steps=3), tmp_path)
    average = [p.detach().clone() for p in trainer.network.parameters()]
    original = Trainer.train_step

    def step_and_follow(self: Trainer) -> float:
        loss = original(self)
        for kept, weight in zip(average, self.network.parameters(), strict=True):
            kept.mul_(decay).add_(weight.detach(), alpha=1.0 - decay)
        return loss

    trainer.train_step = step_and_follow.__get__(trainer)
    trainer.run()
    trained = [p.detach().clone() for p in trainer.network.parameters()]
    exported = load_weights_file(tmp_path / WEIGHTS).network.parameters()
    for expected, got, still in zip(average, exported, trained, strict=True):
        torch.testing.assert_close(got, expected)
        assert not torch.equal(got, still)  # training goes on from the trained weights
    with pytest.raises(SuperresError, match="decay must be in"):
        Trainer(_config(image_folder, ema=1.0), tmp_path / "never")


def test_empty_or_missing_training_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SuperresError, match="no images"):
        Trainer(_config(tmp_path), tmp_path / "run")
    with pytest.raises(SuperresError, match="nowhere: no such file or folder"):
        Trainer(_config(tmp_path / "nowhere"), tmp_path / "run")


def test_rescales_keep_shrunk_versions_and_patches_come_from_each(tmp_path, image_folder):
    from superres.quality.degrade import imresize_matlab

    trainer = Trainer(_config(image_folder, rescales=[0.5, 1.0]), tmp_path)
    sampler = trainer.sampler
    for half, full in sampler.pool.values():
        assert half.shape == (48, 48) and full.shape == (96, 96)
        expected = np.clip(np.round(imresize_matlab(full.astype(np.float64), scale=0.5)), 0, 255)
        np.testing.assert_array_equal(half, expected)
    versions = [sampler._draw().version for _ in range(40)]
    assert set(versions) == {0, 1}
    assert np.isfinite(trainer.train_step())
    with pytest.raises(SuperresError, match="rescale factors"):
        Trainer(_config(image_folder, rescales=[0.05]), tmp_path / "tiny")


def test_memory_is_bounded_by_the_pool(tmp_path, image_folder):
    trainer = Trainer(_config(image_folder, pool_megapixels=0.01), tmp_path)
    assert len(trainer.sampler.pool) == 1
    seen = set()
    for _ in range(12):
        trainer.train_step()
        seen.update(trainer.sampler.pool_indices)
        assert len(trainer.sampler.pool) == 1
    assert len(seen) > 1  # images stream through the pool


def test_cli_train_refuses_to_clobber_a_run(tmp_path, image_folder):
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
    other = _config(  # the same sizes, another network (RGB in and out)
        image_folder, model="real", init=str(tmp_path / "first" / WEIGHTS)
    )
    with pytest.raises(SuperresError, match="cannot start from it"):
        Trainer(other, tmp_path / "c")


@pytest.mark.parametrize("grown", [{"width": 8, "blocks": 3}, {"width": 12, "blocks": 1}])
def test_init_grows_a_compact_model_without_changing_what_it_computes(
    tmp_path, image_folder, grown
):
    """More residual blocks or channels from a smaller run: new blocks start as identities and
    new channels do not reach the old ones, so the grown network is the trained function, and
    every weight trains on from there (none stuck: a zeroed weight moves in the first step,
    what only reaches the output through it in the second)."""
    Trainer(_config(image_folder), tmp_path / "small").run()
    small = load_weights_file(tmp_path / "small" / WEIGHTS).network.eval()
    big = Trainer(
        _config(image_folder, hyper=grown, init=str(tmp_path / "small" / WEIGHTS)), tmp_path / "big"
    )
    assert big.fresh_tensors == [] and len(big.network.body) == grown["blocks"] + 1
    low_res = torch.rand(1, 1, 20, 17, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(big.network.eval()(low_res), small(low_res))
    before = {name: p.detach().clone() for name, p in big.network.named_parameters()}
    big.network.train()
    assert all(np.isfinite(big.train_step()) for _ in range(2))
    unchanged = [name for name, p in big.network.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []


@pytest.mark.parametrize("smaller", [{"width": 8, "blocks": 0}, {"width": 6, "blocks": 1}])
def test_init_refuses_to_shrink_a_compact_model(tmp_path, image_folder, smaller):
    Trainer(_config(image_folder), tmp_path / "one").run()
    shrunk = _config(image_folder, hyper=smaller, init=str(tmp_path / "one" / WEIGHTS))
    with pytest.raises(SuperresError, match="cannot start from it"):
        Trainer(shrunk, tmp_path / "fewer")


def test_init_from_another_scale_takes_the_features_and_starts_the_tail_fresh(
    tmp_path, image_folder
):
    """A x4 run's weights start a x2 one: every tensor of the same name and shape is taken,
    the scale-specific tail (the pixel-shuffle output layer) starts from the seed's values."""
    Trainer(_config(image_folder, scale=4, patch_size=24), tmp_path / "x4").run()
    start = load_weights_file(tmp_path / "x4" / WEIGHTS).network.state_dict()
    x2 = Trainer(_config(image_folder, init=str(tmp_path / "x4" / WEIGHTS)), tmp_path / "x2")
    fresh = Trainer(_config(image_folder), tmp_path / "fresh").network.state_dict()
    assert x2.fresh_tensors  # the tail differs in shape between x4 and x2
    for name, tensor in x2.network.state_dict().items():
        expected = fresh[name] if name in x2.fresh_tensors else start[name]
        assert torch.equal(tensor, expected), name


def _same_crops(sampler, steps):
    """The batch of each step drawn from the same random state: the same crops each time."""
    state = sampler.rng.bit_generator.state
    batches = []
    for step in steps:
        sampler.rng.bit_generator.state = state
        batches.append(sampler.batch(2, step=step))
    return batches


@pytest.mark.parametrize("degradation", ["realistic", "noise10-jpeg70"])
def test_random_degradations_differ_by_step_and_repeat_by_seed(image_folder, tmp_path, degradation):
    sampler = Trainer(_config(image_folder, degradation=degradation), tmp_path).sampler
    first, again, other = _same_crops(sampler, steps=(5, 5, 6))
    assert np.array_equal(first.low_res, again.low_res)
    assert np.array_equal(first.high_res, other.high_res)  # same crops, other degradation
    assert not np.array_equal(first.low_res, other.low_res)


def test_a_track_without_noise_degrades_every_step_alike(image_folder, tmp_path):
    """A specialist's inputs: the fixed track (JPEG q50 of the bicubic shrink), not bicubic."""
    sampler = Trainer(_config(image_folder, degradation="jpeg50"), tmp_path / "jpeg").sampler
    bicubic = Trainer(_config(image_folder), tmp_path / "bicubic").sampler
    bicubic.rng.bit_generator.state = sampler.rng.bit_generator.state
    first, other = _same_crops(sampler, steps=(5, 6))
    (plain,) = _same_crops(bicubic, steps=(5,))
    assert np.array_equal(first.low_res, other.low_res)
    assert np.array_equal(first.high_res, plain.high_res)
    assert not np.array_equal(first.low_res, plain.low_res)


def test_a_grey_share_makes_black_and_white_patches_and_leaves_the_others_alone(
    image_folder, tmp_path
):
    """Greyed patches are three equal planes on both sides (degraded as one plane, as a grey
    JPEG file is); the other patches are exactly what a run without the option draws."""
    settings = dict(model="real", hyper={"width": 4, "blocks": 1}, degradation="realistic")
    colour = Trainer(_config(image_folder, **settings), tmp_path / "colour").sampler
    mixed = Trainer(_config(image_folder, grey=0.5, **settings), tmp_path / "mixed").sampler
    colour.rng.bit_generator.state = mixed.rng.bit_generator.state
    greyed = 0
    for step in range(6):
        state = mixed.rng.bit_generator.state
        batch = mixed.batch(2, step=step)
        colour.rng.bit_generator.state = state
        plain = colour.batch(2, step=step)
        for k in range(2):
            planes = (batch.high_res[k], batch.low_res[k])
            if all(np.array_equal(p[0], p[c]) for p in planes for c in (1, 2)):
                greyed += not np.array_equal(batch.high_res[k], plain.high_res[k])
            else:
                assert np.array_equal(batch.low_res[k], plain.low_res[k])
    assert 0 < greyed < 12
    with pytest.raises(SuperresError, match="grey share"):
        Trainer(_config(image_folder, grey=0.5), tmp_path / "luma")  # a Y model


def test_unknown_degradation_names_fail_before_training(tmp_path, image_folder):
    for settings in (
        {"degradation": "jpeg"},
        {"degradation": "clean"},  # that is "bicubic"
        {"degradation": "jpeg50", "degradation_preset": "light"},  # a preset would be ignored
        {"degradation": "realistic", "degradation_preset": "x"},
        {"val_track": "x"},
    ):
        with pytest.raises(SuperresError):
            Trainer(_config(image_folder, **settings), tmp_path)


# --- stops, resumes and the run folder (issue 14) ----------------------------------------


def _rows(run) -> list[dict[str, str]]:
    with (run / LOG).open(newline="") as handle:
        return list(csv.DictReader(handle))


def _same_weights(a: Trainer, b: Trainer) -> bool:
    pairs = zip(a.network.state_dict().values(), b.network.state_dict().values(), strict=True)
    return all(torch.equal(x, y) for x, y in pairs)


def test_a_loss_that_is_not_a_number_stops_without_touching_the_checkpoint(tmp_path, image_folder):
    trainer = Trainer(_config(image_folder), tmp_path / "run")
    loss = trainer.loss_fn
    trainer.loss_fn = lambda out, high: loss(out, high) * (math.nan if trainer.step == 5 else 1)
    with pytest.raises(TrainingDiverged, match=r"step 6;.*\(step 4\) is intact.*fp32"):
        trainer.run()
    assert torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)["step"] == 4
    resumed = Trainer(_config(image_folder), tmp_path / "run")
    resumed.resume()
    assert all(torch.isfinite(t).all() for t in resumed.network.state_dict().values())


def test_a_stop_checkpoints_the_current_step_and_resumes_exactly(tmp_path, image_folder):
    straight = Trainer(_config(image_folder), tmp_path / "straight")
    straight.run()
    stopped = Trainer(_config(image_folder), tmp_path / "stopped")
    with pytest.raises(TrainingInterrupted, match="stopped at step 3.*--resume"):
        stopped.run(should_stop=lambda: stopped.step == 3)
    assert torch.load(tmp_path / "stopped" / CHECKPOINT, weights_only=True)["step"] == 3
    assert not (tmp_path / "stopped" / LOG).exists()  # no row for half an epoch
    again = Trainer(_config(image_folder), tmp_path / "stopped")
    again.resume()
    again.run()
    assert _same_weights(straight, again)
    # The stopped epoch's losses were kept: its row is the uninterrupted run's.
    columns = ["epoch", "step", "loss", "val_psnr", "lr"]
    assert [[r[c] for c in columns] for r in _rows(tmp_path / "stopped")] == [
        [r[c] for c in columns] for r in _rows(tmp_path / "straight")
    ]


def test_a_kill_between_log_and_checkpoint_does_not_duplicate_rows(tmp_path, image_folder):
    Trainer(_config(image_folder), tmp_path).run(until=4)
    second = Trainer(_config(image_folder), tmp_path)
    second.resume()

    def killed(seconds: float) -> None:
        raise SystemExit("killed after the log row, before the checkpoint")

    second.save_checkpoint = killed  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        second.run()
    assert [r["step"] for r in _rows(tmp_path)] == ["4", "8"]  # row 8 is ahead of the checkpoint
    third = Trainer(_config(image_folder), tmp_path)
    third.resume()
    assert third.truncate_log() == 1
    third.run()
    assert [r["step"] for r in _rows(tmp_path)] == ["4", "8"]


def test_a_fresh_run_replaces_a_log_without_checkpoint(tmp_path, image_folder):
    (tmp_path / LOG).write_text("epoch,step,loss,val_psnr,val_ssim,lr,seconds\n9,900,1,2,3,4,5\n")
    Trainer(_config(image_folder), tmp_path).run()
    assert [r["step"] for r in _rows(tmp_path)] == ["4", "8"]


def test_elapsed_time_continues_across_resumes(tmp_path, image_folder):
    Trainer(_config(image_folder), tmp_path).run(until=4)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    state["seconds"] = 1000.0  # as if the first segment had taken that long
    torch.save(state, tmp_path / CHECKPOINT)
    second = Trainer(_config(image_folder), tmp_path)
    second.resume()
    second.run()
    assert float(_rows(tmp_path)[-1]["seconds"]) >= 1000.0


def test_resume_refuses_changed_settings_but_may_extend(tmp_path, image_folder):
    Trainer(_config(image_folder), tmp_path).run(until=4)
    changed = Trainer(_config(image_folder, lr=5e-3, batch_size=2), tmp_path)
    with pytest.raises(SuperresError, match=r"batch_size 4 -> 2, lr 0\.002 -> 0\.005"):
        changed.resume()
    longer = Trainer(_config(image_folder, steps=12, clip_grad=1.0), tmp_path)
    longer.resume()
    assert longer.step == 4


def test_the_best_validated_weights_survive_a_later_fall(tmp_path, image_folder):
    """A spike late in a run must not cost the best weights: best.safetensors keeps them,
    across a resume too."""
    scores = iter([20.0, 25.0, 22.0])
    config = _config(image_folder, steps=12)
    trainer = Trainer(config, tmp_path)
    trainer.validate = lambda: (next(scores), 0.5)
    trainer.run(until=8)
    best = tmp_path / BEST_WEIGHTS
    assert load_weights_file(best).metadata["steps"] == "8"
    kept = best.read_bytes()
    resumed = Trainer(config, tmp_path)
    resumed.resume()
    resumed.validate = lambda: (next(scores), 0.5)
    resumed.run()
    assert load_weights_file(tmp_path / WEIGHTS).metadata["val_psnr"] == "22.0000"
    assert best.read_bytes() == kept


@pytest.mark.parametrize("clip", [0.0, 0.01])
def test_clip_grad_bounds_every_steps_gradient(tmp_path, image_folder, clip):
    trainer = Trainer(_config(image_folder, clip_grad=clip), tmp_path)
    norms = []
    step = trainer.optimizer.step

    def measured_step(*args, **kwargs):
        grads = [p.grad for p in trainer.network.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        return step(*args, **kwargs)

    trainer.optimizer.step = measured_step
    for _ in range(3):
        trainer.train_step()
    if clip:
        assert max(norms) <= clip * 1.001
    else:
        assert min(norms) > 0.01  # so the clipped case above clips something


def test_precision_and_loss_typos_are_refused(tmp_path, image_folder):
    with pytest.raises(SuperresError, match="unknown precision 'fp23'; choose fp32 or bf16"):
        Trainer(_config(image_folder, precision="fp23"), tmp_path)
    with pytest.raises(SuperresError, match="unknown loss 'l2'"):
        Trainer(_config(image_folder, loss="l2"), tmp_path)


def test_emulated_bf16_is_refused_and_a_resume_may_switch_precision(
    tmp_path, image_folder, monkeypatch
):
    """bf16 without native support would train many times slower: refused; a bf16 run made
    elsewhere resumes here in fp32 (precision is arithmetic, not a setting of the model)."""
    from superres.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: True)
    Trainer(_config(image_folder, precision="bf16"), tmp_path).run(until=2)
    monkeypatch.setattr(trainer_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(SuperresError, match="needs a CPU with AVX512-BF16 or AMX"):
        Trainer(_config(image_folder, precision="bf16"), tmp_path / "fresh")
    moved = Trainer(_config(image_folder, precision="fp32"), tmp_path)
    moved.resume()
    assert moved.step == 2
    moved.run(until=4)
    assert moved.step == 4


def _cli(*args):
    from typer.testing import CliRunner

    from superres.apps.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _train_args(folder, run, *extra):
    return [
        *("train", "--model", "compact", "--scale", "2", "--train", folder, "-o", run),
        *("--steps", "4", "--epoch-steps", "2", "--batch-size", "2", "--patch-size", "24"),
        *extra,
    ]


def test_cli_sigterm_saves_says_how_to_resume_and_resume_takes_the_runs_settings(
    tmp_path, image_folder, monkeypatch
):
    import os
    import signal

    original = Trainer.train_step

    def step_then_sigterm(self: Trainer) -> float:
        loss = original(self)
        if self.step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(Trainer, "train_step", step_then_sigterm)
    stopped = _cli(*_train_args(image_folder, tmp_path, "--lr", "0.002"))
    assert stopped.exit_code == 128 + signal.SIGTERM, stopped.output
    assert (
        f"stopped at step 3: checkpoint saved; continue with `superres train -o {tmp_path} "
        "--resume`" in stopped.output
    )
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", original)

    refused = _cli("train", "-o", tmp_path, "--resume", "--lr", "0.01")
    assert refused.exit_code != 0
    assert "lr 0.002 -> 0.01" in str(refused.exception)
    resumed = _cli("train", "-o", tmp_path, "--resume")  # the run's own settings
    assert resumed.exit_code == 0, resumed.output
    assert [r["step"] for r in _rows(tmp_path)] == ["2", "4"]
    assert json.loads(torch.load(tmp_path / CHECKPOINT, weights_only=True)["config"])["lr"] == 2e-3


def test_cli_off_a_terminal_prints_progress_lines(tmp_path, image_folder):
    result = _cli(*_train_args(image_folder, tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("step 1/4: loss ") for line in lines)
    assert any(line.startswith("epoch 1: step 2, loss ") for line in lines)


def test_cli_hyper_sets_the_architecture_and_refuses_malformed_settings(tmp_path, image_folder):
    run = tmp_path / "run"
    result = _cli(*_train_args(image_folder, run, "--hyper", "width=6", "--hyper", "blocks=2"))
    assert result.exit_code == 0, result.output
    assert json.loads(load_weights_file(run / WEIGHTS).metadata["hyper"]) == {
        "width": 6,
        "blocks": 2,
    }
    for bad in ("blocks", "blocks=two", "=3"):
        refused = _cli(*_train_args(image_folder, tmp_path / bad, "--hyper", bad))
        assert refused.exit_code != 0 and "--hyper" in str(refused.exception), bad
    unknown = _cli(*_train_args(image_folder, tmp_path / "unknown", "--hyper", "depth=3"))
    assert unknown.exit_code != 0 and "depth" in str(unknown.exception)


def test_cli_rescale_takes_factors_and_refuses_anything_else(tmp_path, image_folder):
    run = tmp_path / "run"
    result = _cli(*_train_args(image_folder, run, "--rescale", "0.5,1"))
    assert result.exit_code == 0, result.output
    saved = json.loads(torch.load(run / CHECKPOINT, weights_only=True)["config"])
    assert saved["rescales"] == [0.5, 1.0]
    for bad, message in [("0.5,big", "--rescale takes numbers"), ("2", "rescale factors")]:
        refused = _cli(*_train_args(image_folder, tmp_path / "bad", "--rescale", bad))
        assert refused.exit_code != 0 and message in str(refused.exception), bad


def test_cli_a_fresh_run_needs_model_scale_and_data(tmp_path):
    result = _cli("train", "-o", tmp_path / "run", "--model", "compact")
    assert result.exit_code != 0
    assert "--scale, --train needed to start a run" in str(result.exception)


def test_cli_help_lists_the_choices():
    text = _cli("train", "--help").output
    for choices in ("l1|mse", "fp32|bf16", "cuda:N", "Global batch"):
        assert choices in " ".join(text.split()), choices


def _crafted(tmp_path, hyper: str):
    model = create_model("compact", 2, width=8, blocks=1)
    model.metadata["hyper"] = hyper
    path = tmp_path / "crafted.safetensors"
    save_weights(path, model)
    return path


@pytest.mark.parametrize(
    "hyper,message",
    [
        ('{"width": 200000, "blocks": 1}', "width must be a whole number from 1 to 512"),
        ('{"width": 8, "blocks": 1, "depth": 3}', "compact has no hyper-parameter 'depth'"),
        ('{"width": "8", "blocks": 1}', "width must be a whole number"),
        ('{"width": 8, "blocks": -1}', "blocks must be a whole number from 0 to 64"),
        ("[8, 1]", "hyper-parameters must be a mapping"),
    ],
)
def test_crafted_weights_metadata_is_refused_before_construction(tmp_path, hyper, message):
    with pytest.raises(ModelError, match=message):
        load_weights_file(_crafted(tmp_path, hyper))


def test_distillation_weighs_the_teachers_output_against_the_ground_truth(tmp_path, image_folder):
    """A teacher that is the student's own starting weights (one view) agrees with it on the
    first batch: with distill 1 the loss starts at 0, with 0.5 at half the plain loss."""
    start = tmp_path / "start.safetensors"
    save_weights(start, create_model("compact", 2, width=8, blocks=1))
    plain = Trainer(_config(image_folder, init=str(start)), tmp_path / "plain").train_step()
    for weight, expected in [(1.0, 0.0), (0.5, plain / 2)]:
        config = _config(
            image_folder, init=str(start), teacher=str(start), distill=weight, teacher_ensemble=1
        )
        loss = Trainer(config, tmp_path / f"distill{weight}").train_step()
        assert loss == pytest.approx(expected, abs=1e-6)
    eight = _config(image_folder, init=str(start), teacher=str(start), distill=1.0)
    assert Trainer(eight, tmp_path / "eight").train_step() > 0  # the ensemble is not the model


def test_distillation_settings_that_cannot_work_are_refused(tmp_path, image_folder):
    other = tmp_path / "x3.safetensors"
    save_weights(other, create_model("compact", 3, width=8, blocks=1))
    with pytest.raises(SuperresError, match="teacher .* is x3 on 1 channel.*x2 on 1"):
        Trainer(_config(image_folder, teacher=str(other), distill=0.5), tmp_path / "a")
    with pytest.raises(SuperresError, match="needs a --teacher"):
        Trainer(_config(image_folder, distill=0.5), tmp_path / "b")
    with pytest.raises(SuperresError, match="self-ensemble size must be"):
        Trainer(
            _config(image_folder, teacher=str(other), distill=0.5, teacher_ensemble=3),
            tmp_path / "c",
        )
