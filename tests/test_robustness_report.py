"""``robustness.md`` from hand-built metrics: the OOD tables per set and score, the post-hoc calibrators
beside temperature scaling, and metrics.json files written before either existed (issue 12)."""
import pytest

from auglabel.report.markdown import lookup, robustness_report

METRICS = ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr")


def _rows(text):
    """``{first cell: [other cells]}`` of every Markdown table row in ``text``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| :---"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _ood_metrics():
    m = {"ood.count": 200, "ood.sets": ["noise", "mnist"],
         "ood.scores": ["max_softmax", "max_logit", "energy", "entropy"],
         "ood.auroc_noise": 0.91, "ood.auroc_mnist": 0.7712}
    for s, set_name in enumerate(m["ood.sets"]):
        for j, score in enumerate(m["ood.scores"]):
            for k, metric in enumerate(METRICS):
                m[f"ood.{set_name}.{score}.{metric}"] = 0.5 + 0.1 * s + 0.01 * j + 0.001 * k + 0.00004
    m["ood.noise.max_softmax.auroc"] = 0.91
    m["ood.mnist.max_softmax.auroc"] = 0.7712
    return m


def test_ood_tables_per_set_with_every_score_and_metric():
    m = _ood_metrics()
    text = robustness_report(m)
    assert "## Out-of-distribution detection" in text
    for set_name in m["ood.sets"]:
        block = text[text.index(f"### OOD set `{set_name}`"):]
        block = block[: block.index("\n\n", block.index("| score"))]
        assert "| score | AUROC (%) | AUPR-in (%) | AUPR-out (%) | FPR@95TPR (%) |" in block
        rows = _rows(block)
        assert list(rows) == ["score"] + m["ood.scores"]  # one row per score, in ood.scores' order
        for score in m["ood.scores"]:
            assert rows[score] == [f"{100 * m[f'ood.{set_name}.{score}.{metric}']:.2f}" for metric in METRICS]
    assert _rows(text[text.index("### OOD set `mnist`"):])["max_softmax"][0] == "77.12"
    assert "Sets of an earlier evaluation" not in text  # every ood.auroc_ key has its detailed table
    assert "FPR@95TPR" in text and "200 in-distribution test images" in text


def test_ood_section_of_an_old_metrics_json_still_renders():
    old = {"ood.count": 50, "ood.auroc_noise": 0.9876, "ood.auroc_digits": 0.5}
    text = robustness_report(old)
    assert "| OOD set | AUROC (%) |" in text and "### OOD set" not in text
    assert _rows(text)["noise"] == ["98.76"] and _rows(text)["digits"] == ["50.00"]
    assert "Max-softmax score of 50 test images" in text
    assert "Out-of-distribution" not in robustness_report({"clean.accuracy": 0.9, "clean.count": 10})
    # sets of an earlier evaluation that the last one did not cover keep their AUROC
    mixed = {**_ood_metrics(), "ood.auroc_svhn": 0.6543}
    text = robustness_report(mixed)
    assert "Sets of an earlier evaluation (max-softmax AUROC only):" in text and _rows(text)["svhn"] == ["65.43"]
    # a score listed without values (e.g. a partial write) is left out rather than shown as n/a everywhere
    partial = _ood_metrics()
    partial["ood.scores"] = partial["ood.scores"] + ["mahalanobis"]
    assert "| mahalanobis |" not in robustness_report(partial)


def _clean(count=359, **overrides):
    base = {"accuracy": 0.8, "ece": 0.0912, "rms_ce": 0.1, "oe": 0.05, "brier": 0.3, "nll": 0.6123,
            "ece_adaptive": 0.09, "ece_classwise": 0.02, "ece_debiased": 0.08, "mce": 0.3,
            "calibration_gap": 0.07, "aurc": 0.06, "augrc": 0.03, "count": count}
    return {**base, **overrides}


def _with_clean(**extra):
    m = {f"clean.{k}": v for k, v in _clean().items()}
    m.update({f"temperature.{k}": v for k, v in _clean(ece=0.0311, nll=0.5012).items()})
    m["temperature.value"] = 1.7
    m.update(extra)
    return m


def test_vector_and_isotonic_columns_in_the_clean_table():
    m = _with_clean(vector_scaling={"method": "vector", "before": _clean(), "after": _clean(accuracy=0.81, ece=0.0222,
                                                                                          nll=0.4999)},
                    isotonic_calibration={"method": "isotonic", "before": _clean(),
                                          "after": _clean(accuracy=0.79, ece=0.0133, nll=0.7)})
    section = _section(robustness_report(m), "## Clean test images (359)")
    assert ("| metric | before | after temperature scaling (T = 1.700) | after vector scaling | after isotonic |"
            in section)
    rows = _rows(section)
    assert rows["ECE (%)"] == ["9.12", "3.11", "2.22", "1.33"]
    assert rows["accuracy (%)"] == ["80.00", "80.00", "81.00", "79.00"]
    assert rows["NLL"] == ["0.6123", "0.5012", "0.4999", "0.7000"]
    assert len(rows["AUGRC (%, Traub et al. 2024)"]) == 4
    assert "Lowest ECE: isotonic (1.33%); lowest NLL: vector scaling (0.4999)." in section
    assert "--method vector|isotonic" in section


def test_flat_dotted_calibrator_keys_and_missing_metrics():
    # vector_scaling.after.* as flat keys, an "after" without the newer metrics: n/a, not a crash
    m = _with_clean(**{"vector_scaling.after": {"accuracy": 0.8, "ece": 0.05, "nll": 0.55, "count": 359}})
    assert lookup(m, "vector_scaling.after.ece") == 0.05
    rows = _rows(_section(robustness_report(m), "## Clean test images"))
    assert rows["ECE (%)"] == ["9.12", "3.11", "5.00"] and rows["AURC (%, selective risk)"][-1] == "n/a"
    assert "Lowest ECE: temperature scaling (3.11%)" in robustness_report(m)


def test_calibrators_on_other_images_get_their_own_table():
    # clean.* from a 50-image subsample, calibrate on the whole test split: never side by side
    m = _with_clean(**{"clean.count": 50},
                    isotonic_calibration={"before": _clean(ece=0.1), "after": _clean(ece=0.12, nll=0.9)})
    section = _section(robustness_report(m), "## Clean test images (50)")
    first = section[: section.index("Post-hoc calibration")]
    assert "after isotonic" not in first and "Lowest ECE" not in first
    table = section[section.index("Post-hoc calibration by `auglabel calibrate` (359 test images, not the 50 above)"):]
    assert "| metric | before | after isotonic |" in table
    assert _rows(table)["ECE (%)"] == ["10.00", "12.00"]
    assert "Lowest ECE: no calibration (10.00%)" in table  # isotonic did not help here, and the report says so


def test_an_old_clean_section_is_unchanged():
    text = robustness_report(_with_clean())
    assert "| metric | before | after temperature scaling (T = 1.700) |" in text
    assert "after vector scaling" not in text and "after isotonic" not in text and "Lowest ECE" not in text
    assert "risk_coverage.png" not in text  # no plots recorded
    plotted = robustness_report(_with_clean(**{"reliability.bins": "equal_mass"}))
    assert "`reliability.png` (reliability diagram, 15 equal-mass bins" in plotted and "`risk_coverage.png`" in plotted


@pytest.mark.parametrize("value", [None, float("inf")])
def test_missing_or_infinite_nll_of_a_calibrator(value):
    m = _with_clean(isotonic_calibration={"before": _clean(), "after": _clean(nll=value)})
    text = robustness_report(m)
    assert "after isotonic" in text and "lowest NLL: temperature scaling (0.5012)" in text
