"""Selective prediction (issue 12 item 3): risk-coverage curve, AURC, AUGRC and their plot.

Oracles: hand-worked examples, brute force over every order of tied predictions, and scikit-learn's
AUROC through Traub et al.'s identity AUGRC = (1 - AUROC) acc (1 - acc) + (1 - acc)^2 / 2.
"""
import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from auglabel.errors import ConfigError, DataError
from auglabel.functional.calibration import confidences_and_correct
from auglabel.functional.selective import aurc, augrc, risk_coverage_curve, risk_coverage_points
from auglabel.metrics import CalibrationStats
from auglabel.report import risk_coverage_plot


def tensors(conf, correct):
    return torch.tensor(conf, dtype=torch.float64), torch.tensor(correct)


def test_curve_aurc_and_augrc_by_hand():
    # by confidence: right, wrong, right, wrong
    conf, correct = tensors([0.7, 0.9, 0.6, 0.8], [True, True, False, False])
    coverage, risk, generalized = risk_coverage_curve(conf, correct)
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk.tolist() == pytest.approx([0, 1 / 2, 1 / 3, 2 / 4])
    assert generalized.tolist() == pytest.approx([0, 0.25, 0.25, 0.5])
    # AURC = (0 + 1/2 + 1/3 + 1/2) / 4 = 1/3
    assert float(aurc(conf, correct)) == pytest.approx(1 / 3, abs=1e-12)
    # trapezoids from (0, 0): (0 + 0.125 + 0.25 + 0.375) / 4 = 0.1875;
    # the AUROC of conf for right vs wrong is 3/4: (1 - 3/4) * 0.5 * 0.5 + 0.5^2 / 2 = 0.1875
    assert float(augrc(conf, correct)) == pytest.approx(0.1875, abs=1e-12)


def test_ties_by_hand_are_the_mean_over_tie_orders():
    # 0.9 right, then a tie at 0.5 of one right and one wrong: errors 0, 1/2, 1/2
    # risk 0, 1/4, 1/3 -> AURC 7/36; the two orders give (0 + 0 + 1/3)/3 and (0 + 1/2 + 1/3)/3, mean 7/36
    conf, correct = tensors([0.5, 0.9, 0.5], [False, True, True])
    assert float(aurc(conf, correct)) == pytest.approx(7 / 36, abs=1e-12)


def brute_force_over_tie_orders(conf, correct):
    """Mean (AURC, AUGRC) over every order of the predictions consistent with descending confidence."""
    n = len(conf)
    results = []
    for perm in itertools.permutations(range(n)):
        if any(conf[perm[i]] < conf[perm[i + 1]] for i in range(n - 1)):
            continue
        errors = np.array([0.0 if correct[i] else 1.0 for i in perm])
        cumulative = np.cumsum(errors)
        risk = cumulative / np.arange(1, n + 1)
        generalized = np.concatenate([[0.0], cumulative / n])
        results.append((risk.mean(), np.trapezoid(generalized, dx=1 / n)))
    return np.mean(results, axis=0)


@pytest.mark.parametrize("seed", range(4))
def test_aurc_and_augrc_equal_the_brute_force_mean_over_tie_orders(seed):
    g = torch.Generator().manual_seed(seed)
    conf = torch.randint(1, 4, (7,), generator=g).double() / 4  # 3 levels: many ties
    correct = torch.rand(7, generator=g) < 0.6
    expected_aurc, expected_augrc = brute_force_over_tie_orders(conf.tolist(), correct.tolist())
    assert float(aurc(conf, correct)) == pytest.approx(expected_aurc, abs=1e-12)
    assert float(augrc(conf, correct)) == pytest.approx(expected_augrc, abs=1e-12)


@pytest.mark.parametrize("levels", [None, 20])
def test_augrc_matches_sklearn_auroc_identity(levels):
    from sklearn.metrics import roc_auc_score

    g = torch.Generator().manual_seed(5)
    conf = torch.rand(2000, generator=g, dtype=torch.float64)
    if levels:
        conf = (conf * levels).ceil() / levels  # heavy ties: sklearn counts a tied pair 1/2
    correct = torch.rand(2000, generator=g, dtype=torch.float64) < conf
    acc = float(correct.double().mean())
    auroc = roc_auc_score(correct.numpy(), conf.numpy())
    expected = (1 - auroc) * acc * (1 - acc) + (1 - acc) ** 2 / 2
    assert float(augrc(conf, correct)) == pytest.approx(expected, rel=1e-10)


def test_aurc_matches_numpy_without_ties():
    g = torch.Generator().manual_seed(6)
    conf = torch.rand(999, generator=g, dtype=torch.float64)
    correct = torch.rand(999, generator=g, dtype=torch.float64) < conf
    order = np.argsort(-conf.numpy())
    errors = 1.0 - correct.numpy()[order]
    expected = np.mean(np.cumsum(errors) / np.arange(1, 1000))
    assert float(aurc(conf, correct)) == pytest.approx(expected, rel=1e-12)


def test_perfect_and_uninformative_rankings():
    correct = torch.tensor([True] * 6 + [False] * 4)
    perfect = torch.linspace(1, 0.1, 10, dtype=torch.float64)  # every right one above every wrong one
    # error rate r = 0.4: a perfect ranking's AUGRC is r^2 / 2; its AURC the mean of max(0, i - 6) / i
    assert float(augrc(perfect, correct)) == pytest.approx(0.08, abs=1e-12)
    assert float(aurc(perfect, correct)) == pytest.approx(sum(max(0, i - 6) / i for i in range(1, 11)) / 10)
    tied = torch.full((10,), 0.7, dtype=torch.float64)  # one tie group: no ranking at all
    assert float(aurc(tied, correct)) == pytest.approx(0.4, abs=1e-12)  # the error rate at every coverage
    assert float(augrc(tied, correct)) == pytest.approx(0.2, abs=1e-12)  # r / 2, the random ranking's
    assert float(aurc(perfect, torch.ones(10, dtype=torch.bool))) == 0.0


def test_results_do_not_depend_on_the_input_order():
    g = torch.Generator().manual_seed(7)
    conf = (torch.rand(500, generator=g, dtype=torch.float64) * 10).ceil() / 10
    correct = torch.rand(500, generator=g, dtype=torch.float64) < conf
    reference = (float(aurc(conf, correct)), float(augrc(conf, correct)))
    for _ in range(3):
        perm = torch.randperm(500, generator=g)
        assert (float(aurc(conf[perm], correct[perm])), float(augrc(conf[perm], correct[perm]))) == reference


def test_stats_keys_points_and_exact_merge():
    g = torch.Generator().manual_seed(8)
    logits = torch.randn(1500, 5, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 5, (1500,), generator=g)
    whole, parts = CalibrationStats(), [CalibrationStats() for _ in range(3)]
    whole.update(logits, labels)
    for part, index in zip(parts, torch.randperm(1500, generator=g).tensor_split(3)):
        part.update(logits[index], labels[index])
    merged = parts[0].merge(parts[1]).merge(parts[2]).compute()
    result = whole.compute()
    assert (merged["aurc"], merged["augrc"]) == (result["aurc"], result["augrc"])
    conf, correct = confidences_and_correct(logits, labels)
    assert result["aurc"] == pytest.approx(float(aurc(conf, correct)), rel=1e-12)
    assert 0 < result["augrc"] < result["aurc"] < 1 - result["accuracy"]  # informative confidence
    points = whole.risk_coverage(max_points=101)
    assert len(points["coverage"]) == 101 and points["coverage"][-1] == 1.0
    assert points["risk"][-1] == pytest.approx(1 - result["accuracy"])
    assert points["generalized_risk"][-1] == pytest.approx(1 - result["accuracy"])
    assert (points["aurc"], points["augrc"], points["count"]) == (result["aurc"], result["augrc"], 1500)
    assert all(a < b for a, b in zip(points["coverage"], points["coverage"][1:]))
    small = risk_coverage_points(conf[:10], correct[:10], max_points=101)
    assert len(small["coverage"]) == 10


def test_risk_coverage_plot(tmp_path):
    from auglabel.report.plots import risk_coverage_figure

    g = torch.Generator().manual_seed(9)
    curves = {}
    for name, scale in (("sharp", 4.0), ("flat", 0.5)):
        stats = CalibrationStats()
        logits = torch.randn(800, 4, generator=g) * scale
        stats.update(logits, torch.multinomial(logits.softmax(1), 1, generator=g).squeeze(1))
        curves[name] = stats.risk_coverage()
    path = risk_coverage_plot(curves, tmp_path / "rc" / "risk_coverage.png", title="test")
    with Image.open(path) as image:
        image.verify()
    figure = risk_coverage_figure(curves)
    left, right = figure.axes[:2]
    assert len(left.lines) == len(right.lines) == 2
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert labels[0].startswith("sharp (AURC ") and f"{100 * curves['sharp']['aurc']:.2f}%" in labels[0]
    assert right.lines[0].get_xydata()[0].tolist() == [0.0, 0.0]  # the generalized curve starts at (0, 0)
    with pytest.raises(DataError, match="nothing"):
        risk_coverage_plot({}, tmp_path / "x.png")
    with pytest.raises(DataError, match="lacks"):
        risk_coverage_plot({"a": {"coverage": [1.0], "risk": [0.0]}}, tmp_path / "x.png")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DataError, match="0 samples"):
        aurc(torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    with pytest.raises(DataError, match="equal length"):
        augrc(torch.tensor([0.5, 0.6]), torch.tensor([True]))
    with pytest.raises(DataError, match="NaN"):
        aurc(torch.tensor([float("nan")]), torch.tensor([True]))
    with pytest.raises(ConfigError, match="max_points"):
        risk_coverage_points(torch.tensor([0.5]), torch.tensor([True]), max_points=1)
