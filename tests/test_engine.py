"""End-to-end training on digits: outputs, determinism, resume, refusal to clobber."""
import json

import pytest
import torch

from auglabel.engine.checkpoint import load_checkpoint
from auglabel.engine.trainer import Trainer, WarmupCosine
from auglabel.errors import CheckpointError, ConfigError


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_run_directory_outputs(digits_config, tmp_path):
    cfg = digits_config()
    metrics = Trainer(cfg, cfg.run_dir, progress=False).fit()
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "log.csv", "checkpoint.pt", "reliability.png"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "ece", "rms_ce", "oe", "brier", "nll"):
        assert saved[key] == pytest.approx(metrics[key])
    assert saved["accuracy"] > 0.5  # digits is easy: 2 epochs beat chance (0.1) by far
    from auglabel.data import load_dataset

    assert saved["count"] == len(load_dataset("digits", "test"))  # every test image, once
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,")
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 2


def test_same_seed_same_model(digits_config, tmp_path):
    a = Trainer(digits_config(epochs=1), tmp_path / "a", progress=False)
    a.fit()
    b = Trainer(digits_config(epochs=1), tmp_path / "b", progress=False)
    b.fit()
    c = Trainer(digits_config(epochs=1, seed=1), tmp_path / "c", progress=False)
    c.fit()
    assert torch.equal(_params(a), _params(b))
    assert not torch.equal(_params(a), _params(c))


def test_resume_continues_the_same_trajectory(digits_config, tmp_path):
    straight = Trainer(digits_config(epochs=3), tmp_path / "straight", progress=False)
    straight.fit()
    Trainer(digits_config(epochs=3), tmp_path / "resumed", progress=False).run_epoch(1)  # then "interrupted"
    resumed = Trainer(digits_config(epochs=3), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.start_epoch == 2
    resumed.fit()
    assert torch.allclose(_params(straight), _params(resumed), atol=1e-6)


def test_existing_run_dir_is_refused_then_overwritten(digits_config):
    cfg = digits_config(epochs=1)
    Trainer(cfg, cfg.run_dir, progress=False).fit()
    with pytest.raises(ConfigError, match="already exists"):
        Trainer(cfg, cfg.run_dir, progress=False)
    Trainer(cfg, cfg.run_dir, overwrite=True, progress=False).fit()


def test_resume_without_checkpoint_is_an_error(digits_config):
    cfg = digits_config(epochs=1)
    with pytest.raises(CheckpointError, match="no checkpoint.pt"):
        Trainer(cfg, cfg.run_dir, resume=True, progress=False)


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(total_steps=110, warmup_steps=10)
    assert schedule(0) == pytest.approx(1 / 11)
    assert schedule(9) == pytest.approx(10 / 11)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.5)  # half-way through the cosine
    assert schedule(110) == pytest.approx(0.0, abs=1e-12)
