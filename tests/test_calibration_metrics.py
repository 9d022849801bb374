"""Calibration metrics: hand-worked examples, torchmetrics / scikit-learn oracles, bin edges,
exact accumulation over batches and over a 2-process gloo group.

scikit-learn is imported inside the tests that use it so the spawned gloo workers, which
import this module, start faster.
"""
import json
import math

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from auglabel.errors import ConfigError, DataError
from auglabel.functional.calibration import (
    bin_statistics,
    brier_score,
    confidences_and_correct,
    ece_from_bins,
    negative_log_likelihood,
    overconfidence_from_bins,
    per_sample_scores,
    rms_calibration_error,
)
from auglabel.metrics import CalibrationStats


def two_class_logits(confidences, correct):
    """Logits of 2 classes whose softmax has top probability ``c`` on class 1; label 1 iff correct."""
    c = torch.tensor(confidences, dtype=torch.float64)
    logits = torch.stack([torch.zeros_like(c), torch.log(c / (1 - c))], dim=1)
    return logits, torch.tensor([1 if ok else 0 for ok in correct])


def random_logits(n, k, seed, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64) * scale, torch.randint(0, k, (n,), generator=g)


# ---- hand-worked examples -------------------------------------------------------------------

def test_confidences_and_correct_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 0.0], [0.0, 0.0]])
    conf, correct = confidences_and_correct(logits, torch.tensor([1, 1, 0]))
    expected_second = math.exp(2) / (math.exp(2) + 1)
    assert conf.tolist() == pytest.approx([0.75, expected_second, 0.5])
    assert correct.dtype == torch.bool
    assert correct.tolist()[:2] == [True, False]


def test_five_samples_by_hand():
    # 5 bins with edges 0.2, 0.4, 0.6, 0.8: 0.3 -> bin 1, 0.55 -> bin 2, 0.9/0.95/1.0 -> bin 4.
    conf = torch.tensor([0.95, 0.9, 0.55, 0.3, 1.0], dtype=torch.float64)
    correct = torch.tensor([True, False, True, False, True])
    counts, conf_sums, correct_sums = bin_statistics(conf, correct, num_bins=5)
    assert counts.dtype == conf_sums.dtype == correct_sums.dtype == torch.float64
    assert counts.tolist() == [0, 1, 1, 0, 3]
    assert conf_sums.tolist() == pytest.approx([0, 0.3, 0.55, 0, 2.85])
    assert correct_sums.tolist() == [0, 0, 1, 0, 2]
    # ECE = (1*|0-0.3| + 1*|1-0.55| + 3*|2/3-0.95|) / 5
    assert float(ece_from_bins(counts, conf_sums, correct_sums)) == pytest.approx((0.3 + 0.45 + 0.85) / 5)
    # OE: bin 1 gives 1/5*0.3*0.3, bin 2 is under-confident (0), bin 4 gives 3/5*0.95*(0.95-2/3)
    expected_oe = 0.2 * 0.3 * 0.3 + 0.6 * 0.95 * (0.95 - 2 / 3)
    assert float(overconfidence_from_bins(counts, conf_sums, correct_sums)) == pytest.approx(expected_oe)


def test_rms_by_hand_counts_the_last_bin():
    # bin_size 2, n = 5: floor(5/2) = 2 bins, {0.1, 0.2} and {0.6, 0.7, 0.9} (last absorbs the rest).
    conf = torch.tensor([0.7, 0.1, 0.9, 0.6, 0.2], dtype=torch.float64)
    correct = torch.tensor([True, False, False, True, False])
    gap_low, gap_high = 0.15, 2 / 3 - 2.2 / 3
    expected = math.sqrt(2 / 5 * gap_low**2 + 3 / 5 * gap_high**2)
    assert float(rms_calibration_error(conf, correct, bin_size=2)) == pytest.approx(expected)
    # The AugMix script's loop skips the highest bin and would give sqrt(2/5 * 0.15^2).
    assert float(rms_calibration_error(conf, correct, bin_size=2)) != pytest.approx(math.sqrt(0.4 * 0.0225))


def test_rms_fewer_samples_than_bin_size_is_one_bin():
    conf = torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64)
    correct = torch.tensor([True, False, False])
    assert float(rms_calibration_error(conf, correct)) == pytest.approx(abs(1 / 3 - 0.8))


def test_brier_and_nll_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])  # p = (0.25, 0.75)
    labels = torch.tensor([1, 0])
    per_sample = brier_score(logits, labels, reduction="none")
    assert per_sample.tolist() == pytest.approx([0.25**2 + 0.25**2, 0.75**2 + 0.75**2])
    assert float(brier_score(logits, labels)) == pytest.approx((0.125 + 1.125) / 2)
    assert float(brier_score(logits, labels, reduction="sum")) == pytest.approx(1.25)
    assert float(negative_log_likelihood(logits, labels)) == pytest.approx(-(math.log(0.75) + math.log(0.25)) / 2)


def test_per_sample_scores_agree_with_the_single_metrics():
    logits, labels = random_logits(64, 5, seed=10)
    conf, correct, brier, nll = per_sample_scores(logits, labels.int())
    expected_conf, expected_correct = confidences_and_correct(logits, labels)
    assert torch.equal(conf, expected_conf) and torch.equal(correct, expected_correct)
    assert torch.allclose(brier, brier_score(logits, labels, reduction="none"), rtol=1e-12)
    assert torch.allclose(nll, negative_log_likelihood(logits, labels, reduction="none"), rtol=1e-12)


def test_bin_statistics_of_nothing_is_zeros():
    stats = bin_statistics(torch.zeros(0), torch.zeros(0, dtype=torch.bool), num_bins=4)
    assert all(s.tolist() == [0.0] * 4 for s in stats)


# ---- bin edges ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bin_edges_are_upper_inclusive(dtype):
    bins = 15
    edges = torch.arange(1, bins, dtype=dtype) / bins
    on_edge = torch.cat([torch.tensor([0.0, 1.0], dtype=dtype), edges])
    just_above = torch.nextafter(edges, torch.ones_like(edges))
    conf = torch.cat([on_edge, just_above])
    counts, conf_sums, _ = bin_statistics(conf, torch.zeros_like(conf, dtype=torch.bool), bins)
    assert counts.sum() == conf.numel()  # nothing dropped or counted twice
    expected_bins = [0, bins - 1] + list(range(bins - 1)) + list(range(1, bins))
    assert counts.tolist() == torch.bincount(torch.tensor(expected_bins), minlength=bins).double().tolist()
    # bin 0 holds exactly 0 and 1/15; the last holds 14/15 + ulp and 1.0
    assert float(conf_sums[0]) == pytest.approx(float(edges[0]))
    assert float(conf_sums[-1]) == pytest.approx(float(just_above[-1]) + 1.0)


def test_python_float_edges_match_tensor_edges():
    """``b / 15`` typed as a Python float is exactly on an edge (the edges are computed in float64)."""
    conf = torch.tensor([b / 15 for b in range(1, 15)], dtype=torch.float64)
    counts, _, _ = bin_statistics(conf, torch.zeros(14, dtype=torch.bool))
    assert counts.tolist() == [1.0] * 14 + [0.0]


# ---- oracles ----------------------------------------------------------------------------------

def numpy_ece(conf, correct, bins):
    """Straightforward loop with the (b/B, (b+1)/B] convention."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    return total


def numpy_rms(conf, correct, bin_size):
    """The AugMix appendix-E estimator (the reference script with its last-bin bug fixed), every
    member of a tie group given the group's mean correctness (METHODS.md sec. 9)."""
    order = np.argsort(conf, kind="stable")
    conf, correct = conf[order], correct[order].astype(float)
    for value in np.unique(conf):
        tied = conf == value
        correct[tied] = correct[tied].mean()
    starts = list(range(0, max(1, len(conf) // bin_size) * bin_size, bin_size))
    ends = starts[1:] + [len(conf)]
    return math.sqrt(sum((e - s) / len(conf) * (correct[s:e].mean() - conf[s:e].mean()) ** 2
                         for s, e in zip(starts, ends)))


def test_ece_matches_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.classification")
    logits, labels = random_logits(3000, 10, seed=1)
    conf, correct = confidences_and_correct(logits, labels)
    edges = torch.arange(16, dtype=torch.float64) / 15
    assert (conf[:, None] - edges).abs().min() > 1e-6  # torchmetrics puts edge values in the upper bin
    ours = float(ece_from_bins(*bin_statistics(conf, correct, 15)))
    theirs = float(tm.multiclass_calibration_error(logits.softmax(1).float(), labels, num_classes=10,
                                                   n_bins=15, norm="l1"))
    assert ours == pytest.approx(theirs, abs=1e-5)
    assert ours == pytest.approx(numpy_ece(conf.numpy(), correct.numpy().astype(float), 15), abs=1e-12)


@pytest.mark.parametrize("n,bin_size", [(250, 100), (1000, 100), (57, 10), (10, 100)])
def test_rms_matches_numpy_reference(n, bin_size):
    logits, labels = random_logits(n, 5, seed=n)
    conf, correct = confidences_and_correct(logits, labels)
    expected = numpy_rms(conf.numpy(), correct.numpy().astype(float), bin_size)
    assert float(rms_calibration_error(conf, correct, bin_size)) == pytest.approx(expected, rel=1e-12)


def test_rms_ignores_sample_order_even_with_tied_confidences():
    conf = torch.tensor([0.5] * 6 + [0.9] * 4, dtype=torch.float64)
    # 4 of the six 0.5s are right: how they split over the first two bins changes the result
    correct = torch.tensor([True, False, True, True, False, True, True, False, True, True])
    reference = float(rms_calibration_error(conf, correct, bin_size=3))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        perm = torch.randperm(10, generator=g)
        assert float(rms_calibration_error(conf[perm], correct[perm], bin_size=3)) == reference


def test_rms_ties_at_confidence_one_are_not_split_by_correctness():
    """The issue-12 case: 1,000 predictions at exactly 1.0, 950 right: the gap is 0.05 in every bin."""
    conf = torch.ones(1000, dtype=torch.float64)
    correct = torch.arange(1000) >= 50
    assert float(rms_calibration_error(conf, correct)) == pytest.approx(0.05, abs=1e-12)
    # the old tie-break (wrong ones first) gave sqrt(0.1 * 0.5^2 + 0.9 * 0) = 0.158
    assert float(rms_calibration_error(conf, correct)) != pytest.approx(0.158, abs=1e-3)


def test_rms_tie_groups_by_hand():
    conf = torch.tensor([0.5] * 6 + [0.9] * 4, dtype=torch.float64)
    correct = torch.tensor([True, False, True, True, False, True, True, False, True, True])
    # bins of 3, 3, 4: the 0.5s are right 4/6 of the time, the 0.9s 3/4
    expected = math.sqrt(0.3 * (4 / 6 - 0.5) ** 2 + 0.3 * (4 / 6 - 0.5) ** 2 + 0.4 * (0.75 - 0.9) ** 2)
    assert float(rms_calibration_error(conf, correct, bin_size=3)) == pytest.approx(expected, abs=1e-12)


def test_rms_tie_averaging_is_the_mean_over_random_tie_orders():
    """Each bin's gap equals its expected gap when ties are broken in a uniformly random order."""
    g = torch.Generator().manual_seed(3)
    conf = torch.tensor([0.6] * 7 + [0.8] * 5 + [1.0] * 8, dtype=torch.float64)
    correct = torch.rand(20, generator=g) < conf
    bin_size, repeats = 6, 4000
    gap_sums = torch.zeros(3, dtype=torch.float64)
    for _ in range(repeats):
        order = torch.sort(conf + 1e-9 * torch.rand(20, generator=g, dtype=torch.float64)).indices  # random tie-break
        gaps = correct[order].double() - conf[order]
        gap_sums += torch.stack([gaps[:6].mean(), gaps[6:12].mean(), gaps[12:].mean()])
    mean_gaps = gap_sums / repeats
    from_mean_gaps = math.sqrt(sum(w * float(g) ** 2 for w, g in zip((6 / 20, 6 / 20, 8 / 20), mean_gaps)))
    assert float(rms_calibration_error(conf, correct, bin_size)) == pytest.approx(from_mean_gaps, abs=5e-3)


def test_brier_and_nll_match_sklearn():
    from sklearn.metrics import brier_score_loss, log_loss

    logits, labels = random_logits(500, 7, seed=2)
    probs = logits.softmax(1).numpy()
    expected_brier = brier_score_loss(labels.numpy(), probs, labels=list(range(7)), scale_by_half=False)
    assert float(brier_score(logits, labels)) == pytest.approx(expected_brier, rel=1e-10)
    expected_nll = log_loss(labels.numpy(), probs, labels=list(range(7)))
    assert float(negative_log_likelihood(logits, labels)) == pytest.approx(expected_nll, rel=1e-10)


# ---- CalibrationStats -------------------------------------------------------------------------

def expected_metrics(logits, labels, num_bins=15, rms_bin_size=100):
    from sklearn.metrics import brier_score_loss, log_loss

    conf, correct = confidences_and_correct(logits, labels)
    probs = logits.softmax(1).numpy()
    return {
        "accuracy": float((logits.argmax(1) == labels).double().mean()),
        "ece": numpy_ece(conf.numpy(), correct.numpy().astype(float), num_bins),
        "rms_ce": numpy_rms(conf.numpy(), correct.numpy().astype(float), rms_bin_size),
        "oe": float(overconfidence_from_bins(*bin_statistics(conf, correct, num_bins))),
        "brier": brier_score_loss(labels.numpy(), probs, labels=list(range(logits.shape[1])), scale_by_half=False),
        "nll": log_loss(labels.numpy(), probs, labels=list(range(logits.shape[1]))),
        "count": len(labels),
    }


def test_stats_over_batches_match_oracles():
    logits, labels = random_logits(700, 10, seed=3)
    stats = CalibrationStats()
    for start in range(0, 700, 128):
        stats.update(logits[start:start + 128], labels[start:start + 128])
    result = stats.compute()
    assert list(result) == ["accuracy", "ece", "rms_ce", "oe", "brier", "nll", "ece_adaptive", "ece_classwise",
                            "ece_debiased", "mce", "calibration_gap", "aurc", "augrc", "count"]
    assert result["count"] == 700
    for key, value in expected_metrics(logits, labels).items():
        assert result[key] == pytest.approx(value, rel=1e-9), key
    assert all(0.0 <= result[k] <= 1.0 for k in ("accuracy", "ece", "rms_ce", "oe"))


def test_merge_equals_one_stream_and_bins_describe_the_data():
    logits, labels = random_logits(300, 4, seed=4)
    whole, first, second = CalibrationStats(num_bins=10), CalibrationStats(num_bins=10), CalibrationStats(num_bins=10)
    whole.update(logits, labels)
    first.update(logits[:120], labels[:120])
    second.update(logits[120:], labels[120:])
    assert first.merge(second).compute() == pytest.approx(whole.compute(), rel=1e-12)
    bins = whole.bins()
    conf, correct = confidences_and_correct(logits, labels)
    assert bins["edges"] == pytest.approx([b / 10 for b in range(11)])
    assert sum(bins["counts"]) == 300
    for b, (count, mean_conf, acc) in enumerate(zip(bins["counts"], bins["confidence"], bins["accuracy"])):
        inside = (conf > b / 10) & (conf <= (b + 1) / 10)
        assert count == inside.sum()
        if count:
            assert mean_conf == pytest.approx(float(conf[inside].mean()))
            assert acc == pytest.approx(float(correct[inside].double().mean()))
        else:
            assert mean_conf is None and acc is None
    json.dumps(bins)  # JSON-ready


def test_low_precision_logits_are_upcast():
    logits, labels = random_logits(200, 5, seed=5)
    exact, low = CalibrationStats(), CalibrationStats()
    exact.update(logits.bfloat16().double(), labels)
    low.update(logits.bfloat16(), labels)
    assert low.compute() == pytest.approx(exact.compute(), rel=1e-5)


def test_all_reduce_without_process_group_is_a_no_op():
    logits, labels = random_logits(50, 3, seed=6)
    stats = CalibrationStats()
    stats.update(logits, labels)
    before = stats.compute()
    assert stats.all_reduce() is stats and stats.compute() == before


def test_bad_inputs_raise_clear_errors():
    logits, labels = random_logits(8, 3, seed=7)
    with pytest.raises(DataError, match="shape"):
        confidences_and_correct(logits[0], labels)
    with pytest.raises(DataError, match="labels must have shape"):
        confidences_and_correct(logits, labels[:5])
    with pytest.raises(DataError, match=r"\[0, 2\]"):
        brier_score(logits, torch.full((8,), 3))
    with pytest.raises(DataError, match="integer"):
        negative_log_likelihood(logits, labels.float())
    with pytest.raises(DataError, match="NaN"):
        confidences_and_correct(torch.full((8, 3), float("nan")), labels)
    with pytest.raises(DataError, match="0 rows"):
        confidences_and_correct(logits[:0], labels[:0])
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        bin_statistics(torch.tensor([0.5, 1.5]), torch.tensor([True, False]))
    with pytest.raises(DataError, match="equal length"):
        bin_statistics(torch.tensor([0.5, 0.5]), torch.tensor([True]))
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="num_bins"):
            bin_statistics(torch.tensor([0.5]), torch.tensor([True]), bad)
        with pytest.raises(ConfigError, match="num_bins"):
            CalibrationStats(num_bins=bad)
        with pytest.raises(ConfigError, match="bin_size"):
            rms_calibration_error(torch.tensor([0.5]), torch.tensor([True]), bad)
    with pytest.raises(DataError, match="RMS"):
        rms_calibration_error(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(DataError, match="empty"):
        ece_from_bins(torch.zeros(15), torch.zeros(15), torch.zeros(15))
    with pytest.raises(ConfigError, match="reduction"):
        brier_score(logits, labels, reduction="avg")
    with pytest.raises(DataError, match="no predictions"):
        CalibrationStats().compute()
    with pytest.raises(ConfigError, match="merge"):
        CalibrationStats(num_bins=10).merge(CalibrationStats(num_bins=15))


# ---- two processes, gloo ----------------------------------------------------------------------

def shared_data():
    """200 predictions with tied confidences across classes (duplicated logit rows, other labels)."""
    logits, labels = random_logits(200, 6, seed=8)
    logits[100:160] = logits[:60]
    labels[100:160] = (labels[:60] + 1) % 6
    order = torch.randperm(200, generator=torch.Generator().manual_seed(9))
    return logits, labels, order


def _distributed_worker(rank, world_size, store_path, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size)
    try:
        logits, labels, order = shared_data()
        shard = order[:103] if rank == 0 else order[103:]  # 103 and 97 samples
        uneven = CalibrationStats(rms_bin_size=30)
        for part in shard.split(40):
            uneven.update(logits[part], labels[part])
        one_sided = CalibrationStats(rms_bin_size=30)  # rank 1 holds nothing
        if rank == 0:
            one_sided.update(logits, labels)
        uneven.all_reduce()
        one_sided.all_reduce()
        result = {"uneven": uneven.compute(), "uneven_bins": uneven.bins(), "one_sided": one_sided.compute()}
        uneven.all_reduce()  # a second call must not count the other rank twice
        result["uneven_again"] = uneven.compute()
        try:
            uneven.update(logits[:2], labels[:2])
            result["update_after_reduce"] = "allowed"
        except RuntimeError:
            result["update_after_reduce"] = "refused"
        with open(f"{out_dir}/rank{rank}.json", "w") as handle:
            json.dump(result, handle)
    finally:
        dist.destroy_process_group()


def test_all_reduce_over_two_gloo_processes_equals_one_process(tmp_path):
    mp.spawn(_distributed_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    logits, labels, _ = shared_data()
    single = CalibrationStats(rms_bin_size=30)
    single.update(logits, labels)
    expected, expected_bins = single.compute(), single.bins()
    for rank in (0, 1):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for key in ("uneven", "one_sided", "uneven_again"):
            assert result[key] == pytest.approx(expected, rel=1e-12, abs=1e-15), (rank, key)
        assert result["uneven_bins"]["counts"] == expected_bins["counts"]
        assert result["update_after_reduce"] == "refused"
