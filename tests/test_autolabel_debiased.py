"""AutoLabel's ``rule="signed_gap"`` option: the unbiased signed gap, its standard error, the z test,
the 4-row statistics, the CSV columns; and that the default ``rule="paper"`` is unchanged."""
import csv
import math

import numpy as np
import pytest
import torch

from auglabel.augment import AUGMENTATIONS
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES
from auglabel.labels.autolabel import sample_statistics

from test_autolabel import FixedConfidenceModel, _epoch_context


def _autolabel(**params):
    strategy = LABEL_STRATEGIES.build("autolabel", **params)
    strategy.bind(AUGMENTATIONS.build("gaussian_noise"))
    return strategy


def _stats(buckets, num_bins=15):
    """Statistics of hand-given buckets: a list of (conf, correct) sequences."""
    return torch.stack([sample_statistics(torch.tensor(c, dtype=torch.float64), torch.tensor(k, dtype=torch.float64),
                                          num_bins) for c, k in buckets])


def _numpy_gap(conf, correct):
    d = np.asarray(conf, dtype=np.float64) - np.asarray(correct, dtype=np.float64)
    return d.mean(), d.std(ddof=1) / math.sqrt(len(d))


def _numpy_ece(conf, correct, num_bins=15):
    conf, correct = np.asarray(conf, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    bins = np.clip(np.ceil(conf * num_bins).astype(int) - 1, 0, num_bins - 1)
    return sum(abs(conf[bins == b].sum() - correct[bins == b].sum()) for b in range(num_bins)) / len(conf)


def test_sample_statistics_are_per_bin_sums():
    conf = torch.tensor([0.95, 0.91, 0.45, 0.3], dtype=torch.float64)  # bins (0, 0.5] and (0.5, 1]
    correct = torch.tensor([True, False, False, True])
    stats = sample_statistics(conf, correct, 2)
    expected = torch.tensor([[2, 2], [0.45 + 0.3, 0.95 + 0.91], [1, 1],
                             [0.45**2 + 0.7**2, 0.05**2 + 0.91**2]], dtype=torch.float64)
    torch.testing.assert_close(stats, expected)


def test_signed_gap_hand_example_and_update_formula():
    # bucket 1: over-confident, significant; bucket 2: calibrated-looking, not significant
    b1 = ([0.9, 0.8, 0.95, 0.85, 0.9, 0.7], [0, 0, 1, 0, 0, 0])
    b2 = ([0.9, 0.6, 0.8, 0.7], [1, 0, 1, 0])
    strategy = _autolabel(num_buckets=2, alpha=0.5, init=0.9, rule="signed_gap", z=2.0)
    details = strategy.update_from_statistics(_stats([b1, b2]))
    for i, (c, k) in enumerate([b1, b2]):
        gap, se = _numpy_gap(c, k)
        assert details["gap"][i].item() == pytest.approx(gap, abs=1e-12)
        assert details["gap_se"][i].item() == pytest.approx(se, abs=1e-12)
    gap1, se1 = _numpy_gap(*b1)
    assert abs(gap1) > 2 * se1
    expected = min(max(0.9 - 0.5 * gap1, np.mean(b1[1])), 1.0)
    assert strategy.values[0, 0].item() == pytest.approx(expected, abs=1e-7)
    gap2, se2 = _numpy_gap(*b2)
    assert abs(gap2) <= 2 * se2
    assert strategy.values[0, 1].item() == pytest.approx(0.9)  # not significant: unchanged
    # the same stats under the paper rule: bucket 2 moves by its binned ECE
    paper = _autolabel(num_buckets=2, alpha=0.5, init=0.9)
    paper.update_from_statistics(_stats([b1, b2]))
    ece2 = _numpy_ece(*b2)
    sign2 = np.sign(np.mean(b2[0]) - np.mean(b2[1]))
    assert paper.values[0, 1].item() == pytest.approx(min(max(0.9 - 0.5 * ece2 * sign2, np.mean(b2[1])), 1), abs=1e-7)
    assert paper.values[0, 1].item() != pytest.approx(0.9)


def test_signed_gap_clips_at_one_and_at_accuracy():
    under = ([0.3] * 10, [1] * 9 + [0])  # gap -0.6, significant: up by 0.6, clipped at 1
    over = ([0.99] * 9 + [0.9], [0] * 9 + [1])  # gap 0.8, Acc 0.1: t = 0.9 - 2 * 0.8 < 0.1 -> 0.1
    strategy = _autolabel(num_buckets=2, alpha=2.0, init=0.9, rule="signed_gap")
    details = strategy.update_from_statistics(_stats([under, over]))
    assert details["gap"][0].item() == pytest.approx(-0.6)
    assert strategy.values[0, 0].item() == 1.0
    assert details["gap"][1].item() == pytest.approx((0.99 * 9 + 0.9 - 1) / 10)
    assert strategy.values[0, 1].item() == pytest.approx(0.1)
    # with a small alpha neither clip binds: t - alpha * g exactly
    gentle = _autolabel(num_buckets=2, alpha=0.1, init=0.9, rule="signed_gap")
    gentle.update_from_statistics(_stats([under, over]))
    torch.testing.assert_close(gentle.values, torch.tensor([[0.96, 0.9 - 0.1 * details["gap"][1].item()]]))


def test_signed_gap_leaves_small_and_empty_buckets_and_z_zero_moves_any_nonzero_gap():
    one = ([0.9], [0])  # n = 1: no standard error, no step
    two = ([0.9, 0.8], [0, 1])  # gap 0.35, se 0.65: only z = 0 moves it
    strategy = _autolabel(num_buckets=3, init=0.9, rule="signed_gap")
    details = strategy.update_from_statistics(torch.cat([_stats([one, two]), torch.zeros(1, 4, 15, dtype=torch.float64)]))
    assert strategy.values.tolist() == [[pytest.approx(0.9)] * 3]
    assert math.isnan(details["gap_se"][0].item()) and math.isnan(details["gap_se"][2].item())
    loose = _autolabel(num_buckets=2, init=0.9, alpha=0.1, rule="signed_gap", z=0.0)
    loose.update_from_statistics(_stats([one, two]))
    assert loose.values[0, 0].item() == pytest.approx(0.9)
    assert loose.values[0, 1].item() == pytest.approx(0.9 - 0.1 * 0.35)


def _simulate(rule, shift, repetitions=200, buckets=10, per_bucket=100, init=0.9):
    """Per-bucket steps of one update from ``init``: conf ~ U(0.5, 1), correct ~ Bernoulli(conf - shift)."""
    g = torch.Generator().manual_seed(1234)
    strategy = _autolabel(num_buckets=buckets, alpha=1.0, init=init, rule=rule)
    steps, gaps = [], []
    for _ in range(repetitions):
        conf = 0.5 + 0.5 * torch.rand(buckets, per_bucket, generator=g, dtype=torch.float64)
        correct = (torch.rand(buckets, per_bucket, generator=g, dtype=torch.float64) < conf - shift).double()
        strategy.values.fill_(init)
        details = strategy.update_from_statistics(torch.stack([sample_statistics(c, k, 15) for c, k in zip(conf, correct)]))
        steps.append(strategy.values.flatten().double() - init)
        gaps.append(details["gap"])
    return torch.cat(steps), torch.cat(gaps)


def test_calibrated_model_paper_rule_moves_signed_gap_mostly_does_not():
    paper, _ = _simulate("paper", 0.0)
    debiased, gaps = _simulate("signed_gap", 0.0)
    moved = (debiased.abs() > 1e-7).double().mean().item()
    assert moved <= 0.10  # ~5 % expected at z = 2
    assert (paper.abs() > 1e-7).double().mean().item() > 0.9  # binned ECE > 0 nearly always
    assert paper.abs().mean().item() > 0.05  # the ~9 % small-bucket ECE bias
    assert paper.abs().mean().item() > 5 * debiased.abs().mean().item()
    assert abs(gaps.mean().item()) < 0.01  # the signed gap is unbiased


def test_overconfident_model_signed_gap_steps_by_the_gap():
    steps, gaps = _simulate("signed_gap", 0.15, init=1.0)
    moved = steps.abs() > 1e-7
    assert moved.double().mean().item() > 0.7
    assert (steps[moved] < 0).all()
    assert (-steps[moved]).mean().item() == pytest.approx(0.15, abs=0.03)
    assert gaps.mean().item() == pytest.approx(0.15, abs=0.01)


def test_paper_rule_is_unchanged_and_ignores_the_squared_gap_row():
    g = torch.Generator().manual_seed(5)
    buckets = [((0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)).tolist(),
                (torch.rand(n, generator=g) < 0.6).double().tolist()) for n in (30, 7, 1, 50)]
    stats = _stats(buckets)
    strategy = _autolabel(num_buckets=4, alpha=0.7, init=0.95)
    strategy.update_from_statistics(stats)
    legacy = _autolabel(num_buckets=4, alpha=0.7, init=0.95)
    legacy.update_from_statistics(stats[:, :3].clone())  # the old 3-row layout
    assert torch.equal(strategy.values, legacy.values)
    for i, (c, k) in enumerate(buckets):
        step = 0.7 * _numpy_ece(c, k) * np.sign(np.mean(c) - np.mean(k))
        assert strategy.values[0, i].item() == pytest.approx(min(max(0.95 - step, np.mean(k)), 1.0), abs=1e-6)
    with pytest.raises(ValueError, match="4-row"):
        _autolabel(num_buckets=4, rule="signed_gap").update_from_statistics(stats[:, :3])


def test_bucket_statistics_across_batches_and_the_csv_columns(tmp_path):
    # one bucket, 2000 samples over 4 batches at confidence 0.95, every other one correct
    model = FixedConfidenceModel(confidence=0.95)
    strategy = _autolabel(num_buckets=1, alpha=1.0, rule="signed_gap")
    context = _epoch_context(model, strategy, tmp_path)
    stats = strategy.bucket_statistics(model, context.augment, context.val_loader, torch.Generator().manual_seed(0))
    assert stats.shape == (1, 4, 15) and stats.dtype == torch.float64
    conf = np.full(2000, np.float32(0.95), dtype=np.float64)
    correct = (np.arange(2000) % 2 == 0).astype(np.float64)
    gap, se = _numpy_gap(conf, correct)
    strategy.on_epoch_end(context)
    assert strategy.values[0, 0].item() == pytest.approx(1 - gap, abs=1e-6)
    with (tmp_path / "autolabel.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-2:] == ["val_gap", "val_gap_se"]
    assert float(rows[0]["val_gap"]) == pytest.approx(gap, abs=1e-6)
    assert float(rows[0]["val_gap_se"]) == pytest.approx(se, rel=1e-4)
    assert float(rows[0]["t"]) == pytest.approx(1 - gap, abs=1e-6)


@pytest.mark.parametrize("params", [{"rule": "ece"}, {"rule": "Paper"}, {"z": -0.5}, {"z": float("nan")}])
def test_invalid_rule_and_z(params):
    with pytest.raises(ConfigError, match="rule|z"):
        LABEL_STRATEGIES.build("autolabel", **params)
