"""Trainer options: best-validation epoch, bf16 autocast and channels_last (CPU results unchanged)."""
import csv

import pytest
import torch

from auglabel.engine.checkpoint import load_checkpoint
from auglabel.engine.config import ExperimentConfig
from auglabel.engine.evaluate import evaluate
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_best_val_reports_the_test_metrics_of_the_best_validation_epoch(digits_config, tmp_path):
    trainer = Trainer(digits_config(epochs=4, seed=3), tmp_path / "run", progress=False)
    per_epoch = {}
    for epoch in range(1, 5):  # drive the loop by hand and evaluate every epoch's weights independently
        trainer.run_epoch(epoch)
        stats, _, _ = evaluate(trainer.model, trainer.test_loader)
        per_epoch[epoch] = stats.compute()
    trainer.logger.close()
    rows = list(csv.DictReader((tmp_path / "run" / "log.csv").open()))
    val_acc = [float(r["val_accuracy"]) for r in rows]
    best_epoch = val_acc.index(max(val_acc)) + 1  # the first epoch reaching the maximum
    metrics = trainer.final_metrics()
    best = metrics["best_val"]
    assert best["epoch"] == best_epoch
    assert best["val_accuracy"] == pytest.approx(max(val_acc))
    for key in ("accuracy", "ece", "oe", "nll"):
        assert best[key] == pytest.approx(per_epoch[best_epoch][key], abs=1e-9)
        assert metrics[key] == pytest.approx(per_epoch[4][key], abs=1e-9)  # headline = last epoch


def test_best_epoch_survives_resume(digits_config, tmp_path):
    straight = Trainer(digits_config(epochs=3), tmp_path / "straight", progress=False).fit()
    Trainer(digits_config(epochs=3), tmp_path / "resumed", progress=False).run_epoch(1)
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert state["best"]["epoch"] == 1 and state["best"]["model"] is not None
    resumed = Trainer(digits_config(epochs=3), tmp_path / "resumed", resume=True, progress=False).fit()
    assert resumed["best_val"]["epoch"] == straight["best_val"]["epoch"]
    assert resumed["best_val"]["accuracy"] == pytest.approx(straight["best_val"]["accuracy"], abs=1e-6)


def test_keep_best_off_writes_no_best_block(digits_config, tmp_path):
    metrics = Trainer(digits_config(epochs=1, keep_best=False), tmp_path / "run", progress=False).fit()
    assert "best_val" not in metrics


def test_bf16_is_a_no_op_on_cpu(digits_config, tmp_path, capsys):
    plain = Trainer(digits_config(epochs=1), tmp_path / "a", progress=False)
    plain.fit()
    bf16 = Trainer(digits_config(epochs=1, precision="bf16"), tmp_path / "b", progress=False)
    assert "CUDA only" in capsys.readouterr().err
    bf16.fit()
    assert torch.equal(_params(plain), _params(bf16))


def test_channels_last_gives_the_same_model_up_to_rounding(digits_config, tmp_path):
    plain = Trainer(digits_config(epochs=1), tmp_path / "a", progress=False)
    plain.fit()
    cl = Trainer(digits_config(epochs=1, channels_last=True), tmp_path / "b", progress=False)
    assert next(cl.model.parameters()).dim() == 1 or any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) for p in cl.model.parameters())
    cl.fit()
    assert torch.allclose(_params(plain), _params(cl), atol=1e-4)


def test_unknown_precision_is_a_config_error(digits_config):
    with pytest.raises(ConfigError, match="train.precision"):
        digits_config(precision="fp16").validate()


def test_precision_options_parse_from_a_dict():
    cfg = ExperimentConfig.from_dict({"train": {"precision": "bf16", "channels_last": True}}).validate()
    assert cfg.train.precision == "bf16" and cfg.train.channels_last


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_autocast_trains_on_cuda(digits_config, tmp_path):
    metrics = Trainer(digits_config(epochs=2, device="cuda", precision="bf16", channels_last=True),
                      tmp_path / "run", progress=False).fit()
    assert metrics["accuracy"] > 0.5
