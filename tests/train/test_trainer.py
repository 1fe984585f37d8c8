"""Training end to end on real tiny shards: learning, exact resume, checkpoints, bad input."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fxdist.checkpoint import Checkpoint, load_checkpoint, load_model, save_checkpoint
from fxdist.config import from_dict, load
from fxdist.errors import CheckpointError, ConfigError, TrainingError
from fxdist.models.registry import build_model, model_config_dict
from fxdist.process import process_file
from fxdist.train import TrainConfig, Trainer, latency_aligned, train

from tests.datasets import make_dataset

REPO = Path(__file__).resolve().parents[2]


def tiny_config(shards: Path, out: Path, **changes) -> TrainConfig:
    cfg = load(TrainConfig, REPO / "configs/train/tiny.yaml")
    cfg = dataclasses.replace(cfg, out_dir=str(out), data=dataclasses.replace(cfg.data, shards=str(shards)))
    return dataclasses.replace(cfg, **changes)


class Interrupt(Exception):
    """Raised from the report callback to stop a run the way a killed job would."""


@pytest.mark.parametrize("family", ["lstm", "wavenet", "tcn", "fcn", "cnn"])
def test_each_family_learns_on_tiny_shards(tiny_shards, tmp_path, family):
    cfg = tiny_config(tiny_shards, tmp_path / family, model=f"{family}-tiny", steps=150, val_every=150)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=0.02, schedule="constant"))
    if family == "cnn":  # one unfolded window per output sample: keep windows short
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, output_len=128))
    trainer = Trainer(cfg)
    before, baseline = trainer.validate()
    result = trainer.run()
    assert result.step == 150
    # measured: ratios 0.06 (wavenet) .. 0.82 (cnn) of the untrained model's ESR
    assert result.best_val_esr < 0.9 * before, (family, before, result.best_val_esr)
    assert result.baseline_val_esr == pytest.approx(baseline)
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.model_config["family"] == family
    assert ckpt.sample_rate == 16000 and ckpt.receptive_field == trainer.rf
    assert ckpt.best_val_esr == result.best_val_esr and ckpt.step == 150


@pytest.mark.parametrize("model", ["lstm-tiny", "wavenet-tiny"])
def test_resume_equals_uninterrupted(tiny_shards, tmp_path, model):
    """Stop after step 4 (as a killed job would, right after its checkpoint), resume, compare."""
    whole = train(tiny_config(tiny_shards, tmp_path / "whole", model=model, steps=8, val_every=4))

    def interrupt(metrics, _dir):
        if metrics["step"] == 4:
            raise Interrupt

    cfg = tiny_config(tiny_shards, tmp_path / "split", model=model, steps=8, val_every=4)
    with pytest.raises(Interrupt):
        train(cfg, report=interrupt)
    assert load_checkpoint(tmp_path / "split" / "last.pt").step == 4
    resumed = train(dataclasses.replace(cfg, resume=True))
    assert resumed.step == 8
    a = load_checkpoint(whole.last_checkpoint)
    b = load_checkpoint(resumed.last_checkpoint)
    assert (a.epoch, a.batch_in_epoch) == (b.epoch, b.batch_in_epoch)
    for key, value in a.model_state.items():
        torch.testing.assert_close(b.model_state[key], value, rtol=0, atol=0, msg=key)
    assert resumed.last_val_esr == whole.last_val_esr


def test_checkpoint_is_self_describing_and_safe(tiny_shards, tmp_path):
    result = train(tiny_config(tiny_shards, tmp_path / "run", steps=10, val_every=10))
    raw = torch.load(result.last_checkpoint, weights_only=True)
    assert raw["format"] == "fxdist-checkpoint" and raw["fxdist_version"]
    model, ckpt = load_model(result.last_checkpoint)
    assert model.receptive_field == ckpt.receptive_field
    assert ckpt.optimizer_state and ckpt.scheduler_state and ckpt.train_config["steps"] == 10
    assert ckpt.metadata["effect_id"] == "distortion"
    assert not [p for p in Path(result.out_dir).iterdir() if p.name.startswith(".")]  # no temp files left


def test_not_a_checkpoint_is_refused(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="x.pt: not an fxdist checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not an fxdist checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_resume_with_another_model_is_refused(tiny_shards, tmp_path):
    train(tiny_config(tiny_shards, tmp_path / "run", steps=2, val_every=2))
    cfg = tiny_config(tiny_shards, tmp_path / "run", steps=4, resume=True, model="lstm-small")
    with pytest.raises(CheckpointError, match="last.pt: checkpoint holds model"):
        Trainer(cfg)


def test_window_shorter_than_receptive_field_is_refused(tiny_shards, tmp_path):
    cfg = tiny_config(tiny_shards, tmp_path, model="wavenet-tiny")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, window=8))
    with pytest.raises(ConfigError, match="data.window 8 is shorter than the receptive field 15 of model 'wavenet'"):
        Trainer(cfg)


def test_checkpoint_at_another_rate_is_refused(tiny_shards, tmp_path):
    other = make_dataset(tmp_path / "data8k", sample_rate=8000, tracks=3, seconds=2.0)
    first = train(tiny_config(other, tmp_path / "run8k", steps=2, val_every=2))
    cfg = tiny_config(tiny_shards, tmp_path / "run16k", init_from=first.last_checkpoint)
    with pytest.raises(TrainingError, match="trained at 8000 Hz but shard set .* is at 16000 Hz"):
        Trainer(cfg)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_shards, tmp_path):
    cfg = tiny_config(tiny_shards, tmp_path / "run", model="fcn-tiny", steps=60, val_every=2, checkpoint_every=2)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, lr=1e12, grad_clip=None, schedule="constant"))
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d+.*last good checkpoint is kept"):
        train(cfg)
    good = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(v).all() for v in good.model_state.values())


def test_unknown_train_key_is_refused():
    with pytest.raises(ConfigError, match="'stepz'.*allowed keys: .*steps"):
        from_dict(TrainConfig, {"stepz": 3})


@pytest.mark.parametrize("model", ["lstm-tiny", "tcn-tiny"])
def test_process_file_in_blocks_equals_whole(tiny_shards, tmp_path, model):
    result = train(tiny_config(tiny_shards, tmp_path / "run", model=model, steps=4, val_every=4))
    x = (0.5 * np.sin(np.arange(20000) * 2 * np.pi * 220 / 16000)).astype(np.float32)
    sf.write(tmp_path / "in.wav", np.stack([x, 0.3 * x], axis=1), 16000, subtype="FLOAT")  # stereo: lanes
    process_file(result.last_checkpoint, tmp_path / "in.wav", tmp_path / "whole.wav", block_size=1 << 20)
    process_file(result.last_checkpoint, tmp_path / "in.wav", tmp_path / "blocks.wav", block_size=37)
    whole, _ = sf.read(tmp_path / "whole.wav", dtype="float32")
    blocks, _ = sf.read(tmp_path / "blocks.wav", dtype="float32")
    assert whole.shape == (20000, 2)
    np.testing.assert_allclose(blocks, whole, rtol=0, atol=1e-6)
    assert np.abs(whole - np.stack([x, 0.3 * x], axis=1)).max() > 1e-3  # the model did something


def test_24_bit_file_round_trips_through_model_io(tmp_path):
    """PCM_24 in -> float32 -> identity LSTM (skip path, zero head) -> PCM_24 out, bit-exact."""
    model = build_model({"family": "lstm", "hidden_size": 4})
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    save_checkpoint(tmp_path / "id.pt", Checkpoint(model_config_dict(model), model.state_dict(), 48000, 1))
    ints = np.random.default_rng(1).integers(-(2**23), 2**23, size=30000).astype(np.int32)
    ints[:2] = [-(2**23), 2**23 - 1]
    sf.write(tmp_path / "in.wav", ints << 8, 48000, subtype="PCM_24")
    process_file(tmp_path / "id.pt", tmp_path / "in.wav", tmp_path / "out.wav", block_size=4096, subtype="PCM_24")
    out, _ = sf.read(tmp_path / "out.wav", dtype="int32")
    np.testing.assert_array_equal(out >> 8, ints)


def test_process_refuses_other_rate_unless_asked(tiny_shards, tmp_path):
    result = train(tiny_config(tiny_shards, tmp_path / "run", steps=2, val_every=2))
    sf.write(tmp_path / "in.wav", np.zeros(4410, np.float32) + 0.1, 44100, subtype="FLOAT")
    from fxdist.errors import DataError

    with pytest.raises(DataError, match="in.wav: sample rate 44100 Hz differs from the model's 16000 Hz"):
        process_file(result.last_checkpoint, tmp_path / "in.wav", tmp_path / "out.wav")
    report = process_file(result.last_checkpoint, tmp_path / "in.wav", tmp_path / "out.wav", allow_resample=True)
    assert sf.info(tmp_path / "out.wav").samplerate == 44100 and report.sample_rate == 44100


def test_resume_ignores_training_only_model_options(tiny_shards, tmp_path):
    """A checkpoint saved without checkpoint_activations (as before the option existed) resumes
    with it switched on: same weights, only how backward runs differs."""
    from fxdist.train import weights_config

    model = {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2]}]}
    run = tmp_path / "run"
    train(tiny_config(tiny_shards, run, steps=2, val_every=2, model=model))
    result = train(tiny_config(tiny_shards, run, steps=4, val_every=2, resume=True,
                               model={**model, "checkpoint_activations": True}))
    assert result.step == 4
    assert weights_config(model, "a") == weights_config({**model, "checkpoint_activations": True}, "b")
    assert weights_config(model, "a") != weights_config({**model, "skip_channels": 8}, "c")


CHORUS = {"family": "chorus", "sample_rate": 16000, "max_delay_ms": 6.0, "feedback_terms": 2,
          "rate_hz": 3.0, "phase": 0.7, "centre_ms": 3.0, "depth_ms": 2.0, "feedback": 0.3, "dry": 0.6, "wet": 0.5}


def _own_output_shards(root: Path, model_cfg: dict) -> Path:
    """Shards whose processed audio is ``model_cfg``'s own output on generated tracks (each from
    its start), so that model is exact on every window taken at the right track position."""
    from fxdist.audio import write_audio
    from fxdist.data.generate import GenerateConfig, generate
    from fxdist.data.shards import ShardConfig, write_shards
    from fxdist.process import predict

    model = build_model(model_cfg).eval()
    paths = generate(GenerateConfig(seed=3, sample_rate=16000, tracks=4, segments_per_track=2, segment_seconds=1.0), root / "clean")
    for path in paths:
        clean, _ = sf.read(path, dtype="float32")
        write_audio(root / "processed" / "lfo" / path.name, predict(model, clean), 16000)
    dest = root / "shards" / "lfo"
    write_shards(root, dest, "lfo", ShardConfig(row_samples=4000, rows_per_group=2, rows_per_shard=8, val_fraction=0.25, test_fraction=0.0))
    return dest


def test_time_varying_model_trains_on_windows_at_their_track_position(tmp_path):
    shards = _own_output_shards(tmp_path, CHORUS)
    cfg = tiny_config(shards, tmp_path / "run", model=dict(CHORUS), steps=2, val_every=2)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, pre_emphasis=0.0, dc=0.0),
                              data=dataclasses.replace(cfg.data, output_len=1024, batch_size=4))
    trainer = Trainer(cfg)
    batch = next(trainer._batches())
    assert int(batch["offset"].max()) > 4000  # windows from past the first row: positions matter
    with torch.no_grad():
        at, _ = trainer.model(batch["x"], start=batch["offset"])
        at_zero, _ = trainer.model(batch["x"])
    esr = lambda p: float(((batch["y"] - p) ** 2).sum() / (batch["y"] ** 2).sum())  # noqa: E731
    assert esr(at) < 1e-8 and esr(at_zero) > 1e-3  # the LFO phase is only right at the window's position
    loss, _, _ = trainer._train_step(batch)  # the training step uses the positions: the exact model's loss is ~0
    assert loss < 1e-6


def test_fit_sets_the_weights_before_gradient_steps(tmp_path):
    shards = make_dataset(tmp_path / "data", effect="lowpass", tracks=4, seconds=2.0)
    cfg = tiny_config(shards, tmp_path / "run", model={"family": "fir", "length": 256}, steps=2, val_every=2, fit=True)
    result = Trainer(cfg).run()
    fit, *_ = result.history
    assert fit["fit"] is True and fit["step"] == 0
    assert fit["val_esr"] < 1e-4 < fit["baseline_val_esr"]  # least squares of a 4-pole low-pass, 16 ms of taps
    assert result.best_val_esr <= fit["val_esr"]
    assert load_checkpoint(result.best_checkpoint).best_val_esr == result.best_val_esr


def test_fit_is_refused_for_families_without_one(tiny_shards, tmp_path):
    with pytest.raises(ConfigError, match=r"family 'wavenet' has no direct fit; families with one: .*chorus.*fir"):
        Trainer(tiny_config(tiny_shards, tmp_path, model="wavenet-tiny", fit=True))


def test_a_closed_trainer_does_not_run_again(tiny_shards, tmp_path):
    trainer = Trainer(tiny_config(tiny_shards, tmp_path, steps=1, val_every=1, progress=False))
    trainer.close()
    with pytest.raises(TrainingError, match=f"{tmp_path}: this Trainer was closed"):
        trainer.run()


def test_zero_steps_only_with_a_fit():
    assert TrainConfig(steps=0, fit=True).steps == 0  # the fit alone (configs/train/pvpitch.yaml)
    with pytest.raises(ValueError, match=r"steps must be > 0 \(or 0 with fit: true, the fit alone\), got 0"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="got -1"):
        TrainConfig(steps=-1, fit=True)


def test_latency_aligned_pairs_each_output_with_the_target_it_trails():
    y = torch.randn(2, 1, 50)
    pred = torch.nn.functional.pad(y, (7, 0))[..., :50]  # the effect, 7 samples late
    mask = torch.arange(50.0).expand(2, 1, 50)
    p, t, m = latency_aligned(pred, y, mask, 7)
    assert p.shape == t.shape == m.shape == (2, 1, 43)
    assert torch.equal(p, t) and torch.equal(m[0, 0], torch.arange(7.0, 50.0))
    assert latency_aligned(pred, y, None, 0) == (pred, y, None)


def test_training_windows_compare_a_late_model_with_the_target_it_trails(tiny_shards, tmp_path):
    """A model with a latency (a fitted pvpitch) is trained on the same pairing offline rendering
    uses; a latency that leaves no output in the window is refused with the numbers."""
    model = {"family": "pvpitch", "n_fft": 32, "hop": 4}
    trainer = Trainer(tiny_config(tiny_shards, tmp_path / "ok", model=model, steps=2, val_every=2, progress=False))
    trainer.model.latency_samples.fill_(100)
    batch = next(trainer._batches())
    with torch.no_grad():  # the first chunk of a stateful run starts from the initial state
        pred, _ = trainer.model(batch["x"], trainer.model.initial_state(batch["x"].shape[0], torch.device("cpu")))
    seen, loss_fn = [], trainer.loss_fn
    trainer.loss_fn = lambda p, y, mask: seen.append((p.detach(), y, mask)) or loss_fn(p, y, mask)  # a spy
    trainer._train_step(batch)
    (got_pred, got_y, got_mask), = seen
    assert got_pred.shape == got_y.shape == (batch["y"].shape[0], 1, 1024 - 100) == got_mask.shape
    assert torch.equal(got_y, batch["y"][..., :-100])
    assert torch.allclose(got_pred, pred[..., 100:], atol=1e-6)
    late = Trainer(tiny_config(tiny_shards, tmp_path / "late", model=model, steps=2, val_every=2, progress=False))
    late.model.latency_samples.fill_(1024)
    with pytest.raises(TrainingError, match=r"latency of 1024 samples, not less than the 1024 output samples"):
        late.run()


def _mol_rank(rank: int, world: int, init: str, shards: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model = {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2]}],
                 "skip_channels": 4, "head_channels": 4, "output": "mol", "mol_components": 2}
        cfg = tiny_config(Path(shards), Path(out) / "run", model=model, steps=3, val_every=3, progress=False)
        trainer = Trainer(cfg)
        trainer.run()
        assert isinstance(trainer.train_module, torch.nn.parallel.DistributedDataParallel)
        trainer.close()  # DDP goes while the group lives (see Trainer.close)
        assert not isinstance(trainer.train_module, torch.nn.parallel.DistributedDataParallel)
        flat = torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])
        torch.save(flat, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_mol_head_trains_data_parallel_with_averaged_gradients(tiny_shards, tmp_path):
    """Two gloo ranks read different windows; the MoL WaveNet's weights stay equal across ranks
    only if DDP averaged the gradients of forward_params (it trains through MolParams)."""
    import torch.multiprocessing as mp

    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_mol_rank, args=(2, init, str(tiny_shards), str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    torch.manual_seed(0)  # the run's seed: the weights it started from
    fresh = torch.cat([p.detach().reshape(-1) for p in build_model(
        {"family": "wavenet", "stacks": [{"channels": 4, "kernel_size": 3, "dilations": [1, 2]}],
         "skip_channels": 4, "head_channels": 4, "output": "mol", "mol_components": 2}).parameters()])
    assert not torch.allclose(a, fresh)  # it trained
    assert torch.allclose(a, b, atol=1e-6)
