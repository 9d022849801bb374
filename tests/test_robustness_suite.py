"""``auglabel evaluate --suite ...`` on a tiny digits run, and the pure -C aggregation."""
import json

import pytest
import torch

from auglabel.cli import main
from auglabel.errors import ConfigError, DataError
from auglabel.robustness.suite import corruption_summary, mean_corruption_error, parse_suites

CORRUPTIONS = "gaussian_noise,contrast"
FILES = ("robustness.md", "corruption_severity.png", "corruption_types.png", "reliability_corrupted.png")


# ---- pure aggregation on hand-built numbers ----

def test_mce_unnormalised_and_normalised():
    errors = {"a": [0.1, 0.2, 0.3, 0.4, 0.5], "b": [0.0, 0.0, 0.0, 0.0, 0.5]}
    mce, per_type = mean_corruption_error(errors)
    assert per_type == pytest.approx({"a": 1.5, "b": 0.5}) and mce == pytest.approx(1.0)
    baseline = {"a": [0.6] * 5, "b": [0.05] * 5}  # sums 3.0 and 0.25
    mce, per_type = mean_corruption_error(errors, baseline)
    assert per_type == pytest.approx({"a": 0.5, "b": 2.0}) and mce == pytest.approx(1.25)
    with pytest.raises(DataError, match="no errors for corruption 'b'"):
        mean_corruption_error(errors, {"a": [0.1] * 5})
    with pytest.raises(DataError, match="makes no error"):
        mean_corruption_error(errors, {"a": [0.1] * 5, "b": [0.0] * 5})


def test_corruption_summary_means():
    def cell(acc, ece):
        return {"accuracy": acc, "ece": ece, "rms_ce": 2 * ece}

    cells = {"a": [cell(0.9, 0.01), cell(0.8, 0.02), cell(0.7, 0.03), cell(0.6, 0.04), cell(0.5, 0.05)],
             "b": [cell(1.0, 0.0), cell(1.0, 0.0), cell(0.9, 0.1), cell(0.9, 0.1), cell(0.2, 0.3)]}
    summary = corruption_summary(cells)
    assert summary["acc"] == pytest.approx((3.5 + 4.0) / 10)
    assert summary["ece"] == pytest.approx((0.15 + 0.5) / 10)
    assert summary["rms_ce"] == pytest.approx(2 * summary["ece"])
    assert summary["mce"] == pytest.approx(((5 - 3.5) + (5 - 4.0)) / 2) and not summary["mce_normalized"]
    assert summary["per_severity"]["5"]["acc"] == pytest.approx(0.35)
    assert summary["per_severity"]["3"]["ece"] == pytest.approx(0.065)
    assert summary["per_type"]["a"]["acc"] == pytest.approx(0.7)
    assert summary["per_type"]["b"]["error_sum"] == pytest.approx(1.0)


def test_suite_names():
    assert parse_suites("ood, clean") == ["clean", "ood"]
    with pytest.raises(ConfigError, match="unknown suite 'corruption'.*clean, corruptions, perturbations"):
        parse_suites("clean,corruption")


# ---- end to end on a digits run ----

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny batches on a shared 2-core machine: a second intra-op thread only adds contention (PGD
    ran 30x slower with 2 threads under load)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from auglabel.engine.config import ComponentConfig, DataConfig, ExperimentConfig, OptimConfig, TrainConfig
    from auglabel.engine.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("suite") / "run"
    cfg = ExperimentConfig(data=DataConfig(name="digits", val_size=0.2, train_subset=600), model=ComponentConfig("small_cnn", {}),
                           optim=OptimConfig(lr=0.05, warmup_epochs=0.5),
                           train=TrainConfig(epochs=1, batch_size=64, eval_batch_size=256, seed=0, device="cpu"),
                           run_dir=str(run_dir))
    Trainer(cfg, run_dir).fit()
    return run_dir


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "auglabel" / "corrupted"


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _fails(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err


def _subsample(run_dir, n, seed=0):
    """The evaluated test images, recomputed independently of the suite."""
    from auglabel.data import load_dataset, subsample_indices

    test = load_dataset("digits", "test")
    keep = subsample_indices(test.labels, n, seed)
    return test.images[keep], test.labels[keep]


def test_bad_requests_write_nothing(trained_run, cache, capsys, tmp_path):
    before = _snapshot(trained_run)
    evaluate = ["evaluate", str(trained_run)]
    _fails(capsys, evaluate + ["--suite", "clean,robustness"], "unknown suite 'robustness'")
    _fails(capsys, evaluate + ["--reliability_bins", "quantile"], "unknown --reliability_bins 'quantile'")
    _fails(capsys, evaluate + ["--suite", "corruptions", "--subsample", "100000"], "exceeds the 359 test images")
    _fails(capsys, evaluate + ["--suite", "corruptions", "--corruptions", "gaussian_noise,rain"],
           "unknown corruption 'rain'")
    _fails(capsys, evaluate + ["--suite", "ood", "--ood_dataset", "imagenet21k"], "unknown dataset")
    _fails(capsys, evaluate + ["--suite", "corruptions", "--c_dir", str(tmp_path / "none")], "does not exist")
    # a -C folder of the right size whose labels belong to other images
    folder = tmp_path / "wrong"
    assert main(["data", "corrupt", "digits", "--out", str(folder), "--corruptions", "contrast"]) == 0
    import numpy as np
    labels = np.load(folder / "labels.npy")
    np.save(folder / "labels.npy", (labels + 1) % 10)
    _fails(capsys, evaluate + ["--suite", "corruptions", "--c_dir", str(folder), "--corruptions", "contrast"],
           "do not match the run's test set")
    _fails(capsys, evaluate + ["--suite", "corruptions", "--baseline", str(tmp_path)], "has no metrics.json")
    assert _snapshot(trained_run) == before


def test_full_suite_keys_values_and_files(trained_run, cache, capsys):
    trained = json.loads((trained_run / "metrics.json").read_text())
    argv = ["evaluate", str(trained_run), "--suite", "clean,corruptions,perturbations,adversarial,ood",
            "--subsample", "50", "--corruptions", CORRUPTIONS, "--ood_dataset", "mnist"]
    if not _mnist_available():
        argv[-1] = "fashion_mnist"
    assert main(argv) == 0
    m = json.loads((trained_run / "metrics.json").read_text())
    for key in ("corruption.acc", "corruption.ece", "corruption.mce", "corruption.rms_ce", "corruption.per_type",
                "perturbation.flip_probability", "adversarial.0.02", "adversarial.0.03", "adversarial.0.04",
                "ood.auroc_noise", f"ood.auroc_{argv[-1]}", "temperature.ece", "temperature.corruption.ece"):
        assert key in m, key
    for key in ("epochs", "train_wall_time_s"):  # merged, not replaced
        assert m[key] == trained[key]
    assert m["accuracy"] == trained["accuracy"]  # a subsample never overwrites the full-test headline
    for name in FILES:
        assert (trained_run / name).stat().st_size > 0
    assert "not normalised" in (trained_run / "robustness.md").read_text()
    printed = capsys.readouterr().out
    assert "OOD noise (in-distribution = positive):" in printed and "FPR@95TPR" in printed
    # 'data corrupt' with the same subsample and seed fills the very cache 'evaluate' reads
    assert main(["data", "corrupt", "digits", "--subsample", "50", "--corruptions", CORRUPTIONS]) == 0
    assert m["corruption.directory"] in capsys.readouterr().out

    cells = m["corruption.per_type_severity"]
    assert list(cells) == CORRUPTIONS.split(",") and all(len(v) == 5 for v in cells.values())
    accuracies = [c["accuracy"] for v in cells.values() for c in v]
    assert m["corruption.acc"] == pytest.approx(sum(accuracies) / 10)
    assert m["corruption.mce"] == pytest.approx(sum(5 - sum(c["accuracy"] for c in v) for v in cells.values()) / 2)
    assert m["temperature.corruption.acc"] == pytest.approx(m["corruption.acc"])  # T keeps the argmax
    adversarial = [m["clean.accuracy"]] + [m[f"adversarial.{e}"] for e in ("0.02", "0.03", "0.04")]
    assert adversarial == sorted(adversarial, reverse=True)
    assert 0 <= m["perturbation.flip_probability"] <= 1 and 0 <= m["ood.auroc_noise"] <= 1

    # independent recomputation: the clean subsample and one corrupted cell
    from auglabel.engine.runs import load_run
    from auglabel.robustness.corruption_data import load_corrupted_set
    model = load_run(trained_run).model
    images, labels = _subsample(trained_run, 50)
    with torch.no_grad():
        clean_pred = model(images.float() / 255).argmax(1)
        assert m["clean.accuracy"] == pytest.approx((clean_pred == labels).double().mean().item())
        stacked, c_labels = load_corrupted_set(m["corruption.directory"], ["gaussian_noise"])
        assert torch.equal(c_labels, labels)
        pred = model(stacked["gaussian_noise"][2].float() / 255).argmax(1)
    assert cells["gaussian_noise"][2]["accuracy"] == pytest.approx((pred == labels).double().mean().item())

    # OOD: every score and metric per set, the max-softmax AUROC also under its original key, and
    # the energy score's metrics recomputed with scikit-learn on independently computed logits
    from sklearn.metrics import average_precision_score, roc_auc_score
    from auglabel.robustness.ood import gaussian_noise_like
    assert m["ood.sets"] == ["noise", argv[-1]]
    assert m["ood.scores"] == ["max_softmax", "max_logit", "energy", "entropy"]
    for name in m["ood.sets"]:
        for score in m["ood.scores"]:
            for metric in ("auroc", "aupr_in", "aupr_out", "fpr_at_95_tpr"):
                assert 0 <= m[f"ood.{name}.{score}.{metric}"] <= 1, (name, score, metric)
        assert m[f"ood.auroc_{name}"] == m[f"ood.{name}.max_softmax.auroc"]
    run = load_run(trained_run)
    noise = gaussian_noise_like(run.splits.train_set.images[run.splits.train_idx], 50, 0)
    with torch.no_grad():
        energy_in = torch.logsumexp(model(images.float() / 255).double(), 1).numpy()
        energy_out = torch.logsumexp(model(noise.float() / 255).double(), 1).numpy()
    truth = [1] * 50 + [0] * 50
    scores = list(energy_in) + list(energy_out)
    assert m["ood.noise.energy.auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    assert m["ood.noise.energy.aupr_in"] == pytest.approx(average_precision_score(truth, scores), abs=1e-6)
    in_sorted = sorted(energy_in, reverse=True)
    assert m["ood.noise.energy.fpr_at_95_tpr"] == pytest.approx(
        sum(e >= in_sorted[47] - 1e-9 for e in energy_out) / 50, abs=0.02)  # 48 of 50 = 96% >= 95%


def _mnist_available():
    from auglabel.data import load_dataset
    try:
        load_dataset("mnist", "test")
        return True
    except DataError:
        return False


def test_seeded_rerun_cache_c_dir_and_baseline(trained_run, cache, capsys, tmp_path, monkeypatch):
    from auglabel.robustness import corruption_data

    base = ["evaluate", str(trained_run), "--suite", "corruptions", "--subsample", "50", "--corruptions", CORRUPTIONS]
    assert main(base) == 0
    first = json.loads((trained_run / "metrics.json").read_text())
    monkeypatch.setattr(corruption_data, "corrupt", lambda *a: pytest.fail("the cache was not reused"))
    assert main(base) == 0
    second = json.loads((trained_run / "metrics.json").read_text())
    assert second["corruption.per_type_severity"] == first["corruption.per_type_severity"]

    # the run as its own baseline: every CE_c is 1, so the normalised mCE is 1
    assert main(base + ["--baseline", str(trained_run)]) == 0
    normalised = json.loads((trained_run / "metrics.json").read_text())
    assert normalised["corruption.mce_normalized"] and normalised["corruption.mce"] == pytest.approx(1.0)
    assert "normalised per type by the baseline" in (trained_run / "robustness.md").read_text()
    _fails(capsys, base[:-4] + ["--subsample", "40", "--corruptions", CORRUPTIONS, "--baseline", str(trained_run)],
           "not evaluated on this -C set")

    # a -C folder of the whole test split (official layout) through --c_dir: contrast has no randomness,
    # so its cells match the cached subsample's exactly
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = tmp_path / "digits-C"
    assert main(["data", "corrupt", "digits", "--out", str(folder), "--corruptions", CORRUPTIONS]) == 0
    assert str(folder) in capsys.readouterr().out
    assert main(base + ["--c_dir", str(folder)]) == 0
    via_dir = json.loads((trained_run / "metrics.json").read_text())
    assert via_dir["corruption.directory"] == str(folder.resolve())
    for got, want in zip(via_dir["corruption.per_type_severity"]["contrast"],
                         first["corruption.per_type_severity"]["contrast"]):
        assert got["accuracy"] == pytest.approx(want["accuracy"]) and got["ece"] == pytest.approx(want["ece"])
    assert via_dir["corruption.set_id"] != first["corruption.set_id"]


def test_default_evaluate_keeps_headline_behaviour(trained_run, cache, capsys):
    trained = json.loads((trained_run / "metrics.json").read_text())
    assert main(["evaluate", str(trained_run)]) == 0
    m = json.loads((trained_run / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(trained["accuracy"]) and m["count"] == 359
    assert m["clean.accuracy"] == pytest.approx(m["accuracy"])
    assert m["temperature.value"] > 0 and (trained_run / "reliability.png").is_file()
    assert "accuracy" in capsys.readouterr().out


def _capture_plots(monkeypatch):
    """Record what ``evaluate`` hands to the reliability and risk-coverage plots (they still draw)."""
    from auglabel.robustness import suite

    drawn = {}

    def capture(name, real):
        def wrapper(data, path, *args, **kwargs):
            drawn[path.name] = data
            return real(data, path, *args, **kwargs)
        monkeypatch.setattr(suite, name, wrapper)

    capture("reliability_diagram", suite.reliability_diagram)
    capture("risk_coverage_plot", suite.risk_coverage_plot)
    return drawn


def _assert_png(path, low=10_000, high=1_000_000):
    from PIL import Image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and low < path.stat().st_size < high, path
    with Image.open(path) as image:
        image.verify()


def test_evaluate_draws_risk_coverage_and_equal_mass_reliability(trained_run, cache, capsys, monkeypatch):
    from auglabel.report.plots import risk_coverage_figure

    (trained_run / "risk_coverage.png").unlink(missing_ok=True)
    drawn = _capture_plots(monkeypatch)
    assert main(["evaluate", str(trained_run)]) == 0  # default: equal-width bins, as before
    m = json.loads((trained_run / "metrics.json").read_text())
    _assert_png(trained_run / "reliability.png")
    _assert_png(trained_run / "risk_coverage.png")
    assert drawn["reliability.png"]["scheme"] == "equal_width" and m["reliability.bins"] == "equal_width"
    assert len(drawn["reliability.png"]["counts"]) == 15
    (label, curve), = drawn["risk_coverage.png"].items()
    assert label == "digits test, max softmax"
    assert curve["count"] == m["clean.count"] == 359 and curve["coverage"][-1] == pytest.approx(1.0)
    assert curve["aurc"] == pytest.approx(m["clean.aurc"]) and curve["augrc"] == pytest.approx(m["clean.augrc"])
    assert curve["risk"][-1] == pytest.approx(1 - m["clean.accuracy"])  # full coverage: the error rate
    figure = risk_coverage_figure(drawn["risk_coverage.png"])
    left, right = figure.axes[:2]
    assert f"AURC {100 * m['clean.aurc']:.2f}%" in left.get_legend().get_texts()[0].get_text()
    assert f"AUGRC {100 * m['clean.augrc']:.2f}%" in right.get_legend().get_texts()[0].get_text()
    report = (trained_run / "robustness.md").read_text()
    assert "`risk_coverage.png`" in report and "15 equal-width bins" in report

    # equal-mass bins reach the diagram: 359 = 15 * 23 + 14 -> 14 bins of 24 and one of 23
    drawn.clear()
    assert main(["evaluate", str(trained_run), "--reliability_bins", "equal_mass"]) == 0
    bins = drawn["reliability.png"]
    assert bins["scheme"] == "equal_mass" and sum(bins["counts"]) == 359 and len(bins["counts"]) == 15
    assert max(bins["counts"]) - min(bins["counts"]) <= 1
    widths = [b - a for a, b in zip(bins["edges"], bins["edges"][1:])]
    assert max(widths) > 3 * min(widths)  # not the equal-width grid
    assert json.loads((trained_run / "metrics.json").read_text())["reliability.bins"] == "equal_mass"
    assert "15 equal-mass bins" in (trained_run / "robustness.md").read_text()
    _assert_png(trained_run / "reliability.png")


def test_corrupted_reliability_diagram_takes_equal_mass_bins(trained_run, cache, capsys, monkeypatch):
    drawn = _capture_plots(monkeypatch)
    assert main(["evaluate", str(trained_run), "--suite", "corruptions", "--subsample", "50",
                 "--corruptions", "contrast", "--reliability_bins", "equal_mass"]) == 0
    bins = drawn["reliability_corrupted.png"]  # 5 severities x 50 images = 250 = 15 * 16 + 10
    assert bins["scheme"] == "equal_mass" and sorted(set(bins["counts"])) == [16.0, 17.0]
    assert "reliability.png" not in drawn and "risk_coverage.png" not in drawn  # a subsample: no headline plots


def test_calibrate_results_appear_in_robustness_md(trained_run, cache, capsys):
    assert main(["evaluate", str(trained_run)]) == 0
    for method in ("vector", "isotonic"):
        assert main(["calibrate", str(trained_run), "--method", method]) == 0
    m = json.loads((trained_run / "metrics.json").read_text())
    report = (trained_run / "robustness.md").read_text()  # rewritten by calibrate
    header = next(line for line in report.splitlines() if line.startswith("| metric | before"))
    assert header.endswith("| after vector scaling | after isotonic |"), header
    ece = next(line for line in report.splitlines() if line.startswith("| ECE (%) |"))
    cells = [cell.strip() for cell in ece.strip("|").split("|")]
    assert cells == ["ECE (%)", f"{100 * m['clean.ece']:.2f}", f"{100 * m['temperature.ece']:.2f}",
                     f"{100 * m['vector_scaling']['after']['ece']:.2f}",
                     f"{100 * m['isotonic_calibration']['after']['ece']:.2f}"]
    assert "Lowest ECE: " in report
