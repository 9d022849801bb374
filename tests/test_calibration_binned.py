"""Further binned calibration metrics (issue 12 item 2): adaptive (equal-mass) ECE, class-wise ECE,
signed gap, MCE and the Kumar et al. (2019) debiased L2 calibration error.

Hand-worked examples, torchmetrics (MCE) and straightforward numpy loops as oracles, order
invariance, exact merge across split batches and the small-sample bias of the plug-in estimator.
(The 2-process gloo test in test_calibration_metrics.py compares every key of compute(), these included.)
"""
import math
import statistics

import numpy as np
import pytest
import torch

from auglabel.errors import ConfigError, DataError
from auglabel.functional.binned import (
    adaptive_ece,
    calibration_gap_from_bins,
    classwise_bin_statistics,
    classwise_bin_statistics_from_logits,
    classwise_ece_from_bins,
    debiased_ece_from_bins,
    debiased_squared_ece_from_bins,
    equal_mass_bin_statistics,
    l2_ece_from_bins,
    mce_from_bins,
)
from auglabel.functional.calibration import bin_statistics, confidences_and_correct, ece_from_bins
from auglabel.metrics import CalibrationStats


def random_logits(n, k, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * scale, torch.randint(0, k, (n,), generator=g)


# ---- hand-worked examples -------------------------------------------------------------------

def five_sample_bins():
    # 5 bins: 0.3 -> bin 1, 0.55 -> bin 2, 0.9/0.95/1.0 -> bin 4 (as in test_calibration_metrics)
    conf = torch.tensor([0.95, 0.9, 0.55, 0.3, 1.0], dtype=torch.float64)
    correct = torch.tensor([True, False, True, False, True])
    return bin_statistics(conf, correct, num_bins=5)


def test_mce_and_signed_gap_by_hand():
    bins = five_sample_bins()
    # bin gaps |acc - conf|: bin 1 |0 - 0.3| = 0.3, bin 2 |1 - 0.55| = 0.45, bin 4 |2/3 - 0.95| = 0.283
    assert float(mce_from_bins(*bins)) == pytest.approx(0.45)
    # mean confidence 3.7 / 5 = 0.74, accuracy 3 / 5 = 0.6: over-confident by 0.14
    assert float(calibration_gap_from_bins(*bins)) == pytest.approx(0.14)
    under = bin_statistics(torch.tensor([0.6, 0.7], dtype=torch.float64), torch.tensor([True, True]), 5)
    assert float(calibration_gap_from_bins(*under)) == pytest.approx(-0.35)  # under-confident: negative


def test_debiased_l2_ece_by_hand():
    # Only bin 4 has >= 2 predictions: 3 of them, acc 2/3, conf 0.95:
    # (2/3 - 0.95)^2 - (2/3)(1/3)/2 = 0.080278 - 0.111111 = -0.030833, times 3/5 = -0.0185 -> clipped to 0.
    bins = five_sample_bins()
    assert float(debiased_squared_ece_from_bins(*bins)) == pytest.approx(-0.0185, abs=1e-12)
    assert float(debiased_ece_from_bins(*bins)) == 0.0
    # plug-in L2: sqrt((0.3^2 + 0.45^2 + 3 * 0.283333^2) / 5) = sqrt(0.106667)
    assert float(l2_ece_from_bins(*bins)) == pytest.approx(math.sqrt((0.09 + 0.2025 + 3 * (0.95 - 2 / 3) ** 2) / 5))
    # 4 predictions at 0.9, one right: (0.25 - 0.9)^2 - 0.25 * 0.75 / 3 = 0.4225 - 0.0625 = 0.36 -> 0.6
    one_bin = bin_statistics(torch.full((4,), 0.9, dtype=torch.float64), torch.tensor([True, False, False, False]))
    assert float(debiased_ece_from_bins(*one_bin)) == pytest.approx(0.6, abs=1e-12)
    assert float(ece_from_bins(*one_bin)) == pytest.approx(0.65)


def test_adaptive_ece_by_hand():
    # 2 equal-mass bins of 5 sorted predictions: sizes 3 and 2 (numpy.array_split):
    # {0.1, 0.2, 0.3} acc 1/3 conf 0.2 and {0.4, 0.5} acc 1 conf 0.45 -> 3/5 * 2/15 + 2/5 * 0.55 = 0.3
    conf = torch.tensor([0.3, 0.5, 0.1, 0.4, 0.2], dtype=torch.float64)
    correct = torch.tensor([False, True, False, True, True])
    assert float(adaptive_ece(conf, correct, num_bins=2)) == pytest.approx(0.3, abs=1e-12)
    counts, conf_sums, _, lowest, highest = equal_mass_bin_statistics(conf, correct, 2)
    assert counts.tolist() == [3, 2] and lowest.tolist() == [0.1, 0.4] and highest.tolist() == [0.3, 0.5]


def test_adaptive_ece_averages_tie_groups_and_ignores_order():
    # three 0.5s (one right) are split 2/1 over the two bins: each counts as 1/3 right, so
    # bin 1 {0.5, 0.5}: |2/3 - 1.0| = 1/3, bin 2 {0.5, 0.9}: |4/3 - 1.4| = 1/15 -> (1/3 + 1/15) / 4 = 0.1
    conf = torch.tensor([0.5, 0.5, 0.5, 0.9], dtype=torch.float64)
    correct = torch.tensor([True, False, False, True])
    assert float(adaptive_ece(conf, correct, 2)) == pytest.approx(0.1, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        perm = torch.randperm(4, generator=g)
        assert float(adaptive_ece(conf[perm], correct[perm], 2)) == float(adaptive_ece(conf, correct, 2))


def test_classwise_ece_by_hand():
    # 2 bins (0, 0.5], (0.5, 1]; labels 0 and 2.
    # class 0: p = 0.7 (bin 1, label 0) -> |1 - 0.7|, p = 0.3 (bin 0, not 0) -> |0 - 0.3|: 0.6 / 2 = 0.3
    # class 1: 0.2 and 0.3 both in bin 0, no label 1: |0 - 0.5| / 2 = 0.25
    # class 2: 0.1 and 0.4 in bin 0, one label 2: |1 - 0.5| / 2 = 0.25; mean over classes 0.8 / 3
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]], dtype=torch.float64)
    counts, prob_sums, hit_sums = classwise_bin_statistics(probs, torch.tensor([0, 2]), num_bins=2)
    assert counts.tolist() == [[1, 1], [2, 0], [2, 0]]
    assert hit_sums.tolist() == [[0, 1], [0, 0], [1, 0]]
    assert prob_sums.flatten().tolist() == pytest.approx([0.3, 0.7, 0.5, 0.0, 0.5, 0.0])
    assert float(classwise_ece_from_bins(counts, prob_sums, hit_sums)) == pytest.approx(0.8 / 3)


def test_classwise_bins_use_the_edge_convention():
    # softmax of (0, -1000) is exactly (1.0, 0.0): 1.0 goes to the last bin, 0.0 to the first
    counts, _, hits = classwise_bin_statistics_from_logits(torch.tensor([[0.0, -1000.0]]), torch.tensor([0]), 4)
    assert counts.tolist() == [[0, 0, 0, 1], [1, 0, 0, 0]] and hits.tolist() == [[0, 0, 0, 1], [0, 0, 0, 0]]
    edges = torch.tensor([[0.25, 0.75]], dtype=torch.float64)  # on an edge: the lower bin
    assert classwise_bin_statistics(edges, torch.tensor([1]), 4)[0].tolist() == [[1, 0, 0, 0], [0, 0, 1, 0]]


# ---- oracles ----------------------------------------------------------------------------------

def numpy_adaptive_ece(conf, correct, bins):
    order = np.argsort(conf, kind="stable")
    conf, correct = conf[order], correct[order].astype(float)
    for value in np.unique(conf):
        correct[conf == value] = correct[conf == value].mean()
    return sum(len(c) / len(conf) * abs(a.mean() - c.mean())
               for c, a in zip(np.array_split(conf, bins), np.array_split(correct, bins)) if len(c))


def numpy_classwise_ece(probs, labels, bins):
    n, k = probs.shape
    total = 0.0
    for cls in range(k):
        p, hit = probs[:, cls], (labels == cls).astype(float)
        for b in range(bins):
            inside = (p > b / bins) & (p <= (b + 1) / bins) if b else (p <= 1 / bins)
            if inside.any():
                total += inside.sum() / n * abs(hit[inside].mean() - p[inside].mean())
    return total / k


def numpy_debiased(conf, correct, bins):
    total = 0.0
    for b in range(bins):
        inside = (conf > b / bins) & (conf <= (b + 1) / bins) if b else (conf <= 1 / bins)
        m = inside.sum()
        if m >= 2:
            acc = correct[inside].mean()
            total += m / len(conf) * ((acc - conf[inside].mean()) ** 2 - acc * (1 - acc) / (m - 1))
    return math.sqrt(max(total, 0.0))


@pytest.mark.parametrize("n,bins", [(1000, 15), (37, 15), (10, 15), (500, 7)])
def test_adaptive_ece_matches_numpy(n, bins):
    logits, labels = random_logits(n, 4, seed=n)
    logits[: n // 3] = logits[n // 3 : 2 * (n // 3)]  # tied confidences with other labels
    conf, correct = confidences_and_correct(logits, labels)
    expected = numpy_adaptive_ece(conf.numpy(), correct.numpy(), bins)
    assert float(adaptive_ece(conf, correct, bins)) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_classwise_ece_and_debiased_match_numpy():
    logits, labels = random_logits(800, 6, seed=11)
    probs = logits.softmax(1)
    counts, prob_sums, hit_sums = classwise_bin_statistics(probs, labels, 15)
    assert counts.sum(1).tolist() == [800] * 6  # each class bins every sample once
    expected = numpy_classwise_ece(probs.numpy(), labels.numpy(), 15)
    assert float(classwise_ece_from_bins(counts, prob_sums, hit_sums)) == pytest.approx(expected, rel=1e-12)
    conf, correct = confidences_and_correct(logits, labels)
    expected = numpy_debiased(conf.numpy(), correct.numpy().astype(float), 15)
    assert float(debiased_ece_from_bins(*bin_statistics(conf, correct))) == pytest.approx(expected, rel=1e-12)


def test_mce_matches_torchmetrics_and_gap_is_confidence_minus_accuracy():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    logits, labels = random_logits(3000, 10, seed=12)
    conf, correct = confidences_and_correct(logits, labels)
    edges = torch.arange(16, dtype=torch.float64) / 15
    assert (conf[:, None] - edges).abs().min() > 1e-6  # torchmetrics puts edge values in the upper bin
    bins = bin_statistics(conf, correct, 15)
    theirs = float(tm.multiclass_calibration_error(logits.softmax(1).float(), labels, num_classes=10,
                                                   n_bins=15, norm="max"))
    assert float(mce_from_bins(*bins)) == pytest.approx(theirs, abs=1e-5)
    gap = float(conf.mean() - correct.double().mean())
    assert float(calibration_gap_from_bins(*bins)) == pytest.approx(gap, rel=1e-12)


# ---- small-sample bias -------------------------------------------------------------------------

def calibrated_bins(seed, n=200, shift=0.0):
    """n predictions with confidence U(0.5, 1) that are right with probability ``conf - shift``."""
    g = torch.Generator().manual_seed(seed)
    conf = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    return bin_statistics(conf, torch.rand(n, generator=g, dtype=torch.float64) < conf - shift, 15)


def test_plain_ece_is_biased_at_small_n_and_the_debiased_estimator_is_not():
    """Perfectly calibrated, n = 200, 15 bins, 200 seeds (measured: plain ECE 6.5%, plug-in L2 8.1%,
    debiased 2.3%; squared: plug-in 0.0070, debiased 0.00014 +- 0.00025, the truth is 0)."""
    runs = [calibrated_bins(seed) for seed in range(200)]
    plain = statistics.mean(float(ece_from_bins(*b)) for b in runs)
    plain_l2 = statistics.mean(float(l2_ece_from_bins(*b)) for b in runs)
    debiased = statistics.mean(float(debiased_ece_from_bins(*b)) for b in runs)
    squared = [float(debiased_squared_ece_from_bins(*b)) for b in runs]
    assert plain > 0.04 and plain_l2 > 0.06  # clearly > 0 although the model is calibrated
    assert debiased < 0.4 * plain_l2
    assert abs(statistics.mean(squared)) < 3 * statistics.stdev(squared) / len(squared) ** 0.5 + 1e-4
    assert statistics.mean(float(l2_ece_from_bins(*b)) ** 2 for b in runs) > 0.005


def test_debiased_estimator_recovers_a_known_miscalibration():
    """Right with probability conf - 0.1: the binned L2 error is exactly 0.1 (squared 0.01)."""
    runs = [calibrated_bins(seed, shift=0.1) for seed in range(200)]
    debiased_sq = statistics.mean(float(debiased_squared_ece_from_bins(*b)) for b in runs)
    plain_sq = statistics.mean(float(l2_ece_from_bins(*b)) ** 2 for b in runs)
    assert debiased_sq == pytest.approx(0.01, abs=0.0015)  # measured 0.0097
    assert plain_sq > 0.015  # measured 0.018: the plug-in nearly doubles it


# ---- CalibrationStats -------------------------------------------------------------------------

NEW_KEYS = ("ece_adaptive", "ece_classwise", "ece_debiased", "mce", "calibration_gap")


def test_stats_new_keys_match_the_functions_and_merge_exactly():
    logits, labels = random_logits(700, 5, seed=13)
    logits[:200] = logits[200:400]  # ties across batches
    whole, first, second = CalibrationStats(), CalibrationStats(), CalibrationStats()
    for start in range(0, 700, 96):
        whole.update(logits[start:start + 96], labels[start:start + 96])
    first.update(logits[:333], labels[:333])
    second.update(logits[333:], labels[333:])
    result = whole.compute()
    assert first.merge(second).compute() == pytest.approx(result, rel=1e-12, abs=1e-15)
    conf, correct = confidences_and_correct(logits, labels)
    bins = bin_statistics(conf, correct, 15)
    expected = {"ece_adaptive": numpy_adaptive_ece(conf.numpy(), correct.numpy(), 15),
                "ece_classwise": numpy_classwise_ece(logits.softmax(1).numpy(), labels.numpy(), 15),
                "ece_debiased": float(debiased_ece_from_bins(*bins)), "mce": float(mce_from_bins(*bins)),
                "calibration_gap": float(conf.mean() - correct.double().mean())}
    for key in NEW_KEYS:
        assert result[key] == pytest.approx(expected[key], rel=1e-10), key
    shuffled = CalibrationStats()
    perm = torch.randperm(700, generator=torch.Generator().manual_seed(1))
    shuffled.update(logits[perm], labels[perm])
    assert shuffled.compute() == pytest.approx(result, rel=1e-12, abs=1e-15)
    assert shuffled.compute()["ece_adaptive"] == result["ece_adaptive"]  # tie averaging: bit-identical


def test_stats_refuse_a_change_in_the_number_of_classes():
    stats = CalibrationStats()
    stats.update(*random_logits(10, 3, seed=1))
    with pytest.raises(DataError, match="classes"):
        stats.update(*random_logits(10, 4, seed=2))
    other = CalibrationStats()
    other.update(*random_logits(10, 4, seed=3))
    with pytest.raises(DataError, match="classes"):
        stats.merge(other)
    empty = CalibrationStats().merge(stats)  # an empty accumulator takes K from the other
    assert empty.num_classes == 3 and empty.compute() == pytest.approx(stats.compute())


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="adaptive ECE"):
        adaptive_ece(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(DataError, match="equal length"):
        adaptive_ece(torch.tensor([0.5, 0.6]), torch.tensor([True]))
    with pytest.raises(ConfigError, match="num_bins"):
        adaptive_ece(torch.tensor([0.5]), torch.tensor([True]), 0)
    with pytest.raises(DataError, match="empty"):
        mce_from_bins(torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(DataError, match=r"\(N, K\)"):
        classwise_bin_statistics(torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        classwise_bin_statistics(torch.full((2, 2), 1.5), torch.zeros(2, dtype=torch.long))


def test_robustness_report_lists_every_clean_metric():
    from auglabel.report.markdown import robustness_report

    stats = CalibrationStats()
    stats.update(*random_logits(300, 4, seed=14))
    clean = stats.compute()
    metrics = {f"clean.{k}": v for k, v in clean.items()}
    metrics.update({f"temperature.{k}": v for k, v in clean.items()}, **{"temperature.value": 1.0})
    text = robustness_report(metrics)
    for key, label in (("ece_adaptive", "adaptive ECE"), ("ece_classwise", "class-wise ECE"),
                       ("ece_debiased", "debiased L2 cal. error"), ("mce", "maximum cal. error"),
                       ("calibration_gap", "signed gap conf - acc"), ("aurc", "AURC"), ("augrc", "AUGRC")):
        row = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
        assert row.count(f"{100 * clean[key]:.2f}") == 2, row  # before and after temperature scaling
    old = robustness_report({"clean.accuracy": 0.9, "clean.count": 10})  # a metrics.json from before
    assert "| AURC (%, selective risk) | n/a | n/a |" in old
