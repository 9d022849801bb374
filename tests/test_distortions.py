"""Dataset distortions (AutoDO paper sec. 5.1): per-class counts after the imbalance, the share relabelled,
determinism, uniform-over-K relabelling (a relabelled sample may keep its class), the clean validation split
and test set untouched, the record in the run directory, per-class test accuracy in metrics.json."""
import json

import pytest
import torch

from auglabel.data.distortions import distort, imbalance, label_noise, minority_classes
from auglabel.engine.build import load_splits
from auglabel.engine.config import ComponentConfig
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError


def _labels(per_class, k):
    return torch.arange(k).repeat_interleave(per_class)


def test_minority_classes_are_those_at_or_above_half_of_k():
    assert minority_classes(10) == [5, 6, 7, 8, 9]
    assert minority_classes(5) == [3, 4]  # 2c >= 5
    assert minority_classes(2) == [1]


def test_imbalance_keeps_round_n_over_ir_of_each_minority_class():
    labels = _labels(100, 10)
    idx = torch.arange(1000)
    kept, dropped = imbalance(idx, labels, 10, 10.0, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[kept], minlength=10).tolist()
    assert counts == [100] * 5 + [10] * 5
    assert len(dropped) == 450 and not set(kept.tolist()) & set(dropped.tolist())
    assert torch.equal(torch.cat([kept, dropped]).sort().values, idx)
    labels = torch.tensor([0] * 25 + [1] * 25 + [2] * 25 + [3] * 25 + [4] * 1)
    kept, _ = imbalance(torch.arange(101), labels, 5, 4.0, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[kept], minlength=5).tolist() == [25, 25, 25, 6, 1]  # round(6.25); min 1
    kept, dropped = imbalance(torch.arange(101), labels, 5, 1.0, torch.Generator().manual_seed(0))
    assert len(kept) == 101 and len(dropped) == 0


def test_label_noise_relabels_round_nr_n_samples_uniformly_over_all_classes():
    labels = torch.zeros(4000, dtype=torch.int64)
    idx = torch.arange(0, 8000, 2)  # dataset indices, not positions
    chosen, new = label_noise(idx, torch.zeros(8000, dtype=torch.int64), 4, 0.3, torch.Generator().manual_seed(1))
    assert len(chosen) == 1200 and len(set(chosen.tolist())) == 1200 and set(chosen.tolist()) <= set(idx.tolist())
    shares = torch.bincount(new, minlength=4).float() / 1200
    assert torch.allclose(shares, torch.full((4,), 0.25), atol=0.04)  # class 0 (the old label) included
    assert labels.sum() == 0


def test_distort_is_deterministic_records_everything_and_changes_only_training_labels():
    labels = _labels(60, 10)
    train_idx = torch.arange(0, 600, 3)
    val_idx = torch.tensor([1, 2, 4, 5])
    kept, noisy, record = distort(train_idx, labels, 10, imbalance_ratio=4, noise_ratio=0.2, seed=5)
    kept2, noisy2, _ = distort(train_idx, labels, 10, imbalance_ratio=4, noise_ratio=0.2, seed=5)
    assert torch.equal(kept, kept2) and torch.equal(noisy, noisy2)
    kept3, noisy3, _ = distort(train_idx, labels, 10, imbalance_ratio=4, noise_ratio=0.2, seed=6)
    assert not torch.equal(noisy, noisy3)
    assert set(kept.tolist()) | set(record.dropped.tolist()) == set(train_idx.tolist())
    assert len(record.relabelled) == round(0.2 * len(kept)) and set(record.relabelled.tolist()) <= set(kept.tolist())
    assert torch.equal(record.original_labels, labels[record.relabelled])
    assert torch.equal(noisy[record.relabelled], record.new_labels)
    changed = torch.nonzero(noisy != labels).flatten()
    assert torch.equal(changed, record.flipped)  # the flipped ones are exactly the changed labels
    assert torch.equal(noisy[val_idx], labels[val_idx]) and labels is not noisy
    assert record.counts_before == torch.bincount(labels[train_idx], minlength=10).tolist()
    assert record.counts_after == torch.bincount(labels[kept], minlength=10).tolist()
    saved = record.to_dict()
    assert saved["dropped"] == record.dropped.tolist() and saved["num_flipped"] == len(record.flipped)


def test_a_relabelled_sample_keeps_its_class_with_probability_one_over_k():
    labels = _labels(2000, 2)
    _, _, record = distort(torch.arange(4000), labels, 2, noise_ratio=0.5, seed=0)
    kept_class = float((record.new_labels == record.original_labels).float().mean())
    assert kept_class == pytest.approx(0.5, abs=0.03)  # uniform over K = 2 classes, not "another class"
    assert 0 < len(record.flipped) < len(record.relabelled)


def test_load_splits_distorts_the_training_split_only(digits_config):
    clean_cfg = digits_config()
    clean = load_splits(clean_cfg)
    cfg = digits_config()
    cfg.data.imbalance_ratio, cfg.data.noise_ratio = 5.0, 0.25
    distorted = load_splits(cfg)
    assert torch.equal(distorted.val_idx, clean.val_idx) and torch.equal(distorted.test_idx, clean.test_idx)
    assert torch.equal(distorted.train_set.labels[clean.val_idx], clean.train_set.labels[clean.val_idx])
    assert torch.equal(distorted.clean_labels, clean.train_set.labels)
    assert set(distorted.train_idx.tolist()) < set(clean.train_idx.tolist())
    counts = torch.bincount(clean.train_set.labels[distorted.train_idx], minlength=10)
    before = torch.bincount(clean.train_set.labels[clean.train_idx], minlength=10)
    expected = [int(n) if c < 5 else max(1, int(n / 5 + 0.5)) for c, n in enumerate(before.tolist())]
    assert counts.tolist() == expected
    record = distorted.distortion
    assert len(record.relabelled) == round(0.25 * len(distorted.train_idx))
    assert torch.equal(load_splits(cfg).train_set.labels, distorted.train_set.labels)  # reproducible
    assert clean.distortion is None


def test_bad_ratios_are_one_line_config_errors(digits_config):
    for key, value, message in (("imbalance_ratio", 0.5, "imbalance_ratio must be a number >= 1"),
                                ("noise_ratio", 1.0, r"noise_ratio must be in \[0, 1\)"),
                                ("noise_ratio", -0.1, r"noise_ratio must be in \[0, 1\)")):
        cfg = digits_config()
        setattr(cfg.data, key, value)
        with pytest.raises(ConfigError, match=message):
            cfg.validate()
    with pytest.raises(ConfigError, match="imbalance_ratio"):
        distort(torch.arange(4), torch.zeros(4, dtype=torch.int64), 2, imbalance_ratio=float("nan"))


def test_a_distorted_run_records_the_distortion_and_reports_per_class_accuracy(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.data.imbalance_ratio, cfg.data.noise_ratio = 3.0, 0.2
    cfg.labels = ComponentConfig("onehot")
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    metrics = trainer.fit()
    saved = json.loads((tmp_path / "run" / "distortion.json").read_text())
    record = trainer.splits.distortion
    assert saved["relabelled"] == record.relabelled.tolist() and saved["new_labels"] == record.new_labels.tolist()
    assert saved["dropped"] == record.dropped.tolist() and saved["counts_after"] == record.counts_after
    per_class = metrics["per_class_accuracy"]
    assert len(per_class) == 10 and all(0 <= a <= 1 for a in per_class)
    # per-class accuracies weighted by the class counts give the accuracy
    counts = torch.bincount(trainer.splits.test_set.labels[trainer.splits.test_idx], minlength=10).double()
    assert float((torch.tensor(per_class, dtype=torch.float64) * counts).sum() / counts.sum()) == pytest.approx(metrics["accuracy"])
    assert len(metrics["best_val"]["per_class_accuracy"]) == 10
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["per_class_accuracy"] == per_class
