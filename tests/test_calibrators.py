"""Post-hoc calibrators (calibrate.py): vector scaling against a scipy L-BFGS-B oracle and planted
per-class scales, isotonic regression against scikit-learn's CalibratedClassifierCV, before/after
on synthetic over-confident logits, JSON state, the registry, exact fitting over a 2-process gloo
group, and ``auglabel calibrate --method`` on a tiny digits run.

scikit-learn and scipy are imported inside the tests so that the spawned gloo workers, which import
this module, start faster.
"""
import json
import shutil

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from auglabel.calibrate import (
    CALIBRATORS, MAX_SCALE, MIN_SCALE, PROBABILITY_FLOOR, IsotonicCalibration, TemperatureScaling, VectorScaling,
    calibrator_from_state, fit_calibrator, fit_temperature, fit_vector_scaling, gather_logits, load_calibrator,
    save_calibrator,
)
from auglabel.errors import ConfigError, DataError
from auglabel.metrics import CalibrationStats

SCALES = torch.tensor([0.3, 0.5, 0.8, 1.2, 0.4], dtype=torch.float64)
BIASES = torch.tensor([0.5, -0.2, 0.0, 0.3, -0.6], dtype=torch.float64)


def planted(n, seed, scale=SCALES, bias=BIASES, spread=3.0):
    """Logits z and labels drawn from softmax(scale * z + bias): the planted vector scaling is the
    NLL-optimal one in the limit."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, len(scale), generator=g, dtype=torch.float64) * spread
    labels = torch.multinomial((logits * scale + bias).softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


def nll(logits, labels):
    return float(F.cross_entropy(logits.double(), labels))


def scipy_vector_scaling(logits, labels):
    """Independent oracle: scipy's L-BFGS-B on a numpy NLL with its analytic gradient, scales
    bounded like auglabel's, biases free."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    z, y = logits.double().numpy(), labels.numpy()
    n, k = z.shape

    def objective(theta):
        a = z * theta[:k] + theta[k:]
        lse = logsumexp(a, axis=1)
        residual = np.exp(a - lse[:, None])
        residual[np.arange(n), y] -= 1
        return float(np.mean(lse - a[np.arange(n), y])), np.concatenate([(residual * z).mean(0), residual.mean(0)])

    result = minimize(objective, np.r_[np.ones(k), np.zeros(k)], jac=True, method="L-BFGS-B",
                      bounds=[(MIN_SCALE, MAX_SCALE)] * k + [(None, None)] * k,
                      options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 2000})
    return result.x[:k], result.x[k:], result.fun


# ---- vector scaling ---------------------------------------------------------------------------

def test_vector_scaling_matches_scipy_and_recovers_planted_scales():
    logits, labels = planted(3000, seed=0)
    scale, bias = fit_vector_scaling(logits, labels)
    want_scale, want_bias, want_nll = scipy_vector_scaling(logits, labels)
    assert nll(logits * scale + bias, labels) == pytest.approx(want_nll, abs=1e-10)
    np.testing.assert_allclose(scale.numpy(), want_scale, atol=1e-5)
    np.testing.assert_allclose((bias - bias.mean()).numpy(), want_bias - want_bias.mean(), atol=1e-5)
    assert float(bias.sum()) == pytest.approx(0.0, abs=1e-12)  # softmax's free shift stays at 0
    # the planted miscalibration, up to sampling noise of 3000 labels
    np.testing.assert_allclose(scale.numpy(), SCALES.numpy(), rtol=0.12)
    np.testing.assert_allclose(bias.numpy(), (BIASES - BIASES.mean()).numpy(), atol=0.1)


def test_vector_scaling_on_a_temperature_miscalibration_is_temperature_scaling():
    k, temperature = 5, 2.5
    logits, labels = planted(6000, seed=1, scale=torch.full((k,), 1 / temperature, dtype=torch.float64),
                             bias=torch.zeros(k, dtype=torch.float64))
    scale, bias = fit_vector_scaling(logits, labels)
    fitted_t = fit_temperature(logits, labels)
    np.testing.assert_allclose(scale.numpy(), np.full(k, 1 / fitted_t), rtol=0.1)  # sampling noise: ~4% per class
    assert float(bias.abs().max()) < 0.08
    # its family holds temperature scaling (w = 1/T, b = 0), so its NLL on the fitting data is never higher
    assert nll(logits * scale + bias, labels) <= nll(logits / fitted_t, labels) + 1e-12


def test_vector_scaling_separable_data_stays_bounded():
    logits = torch.eye(3, dtype=torch.float64).repeat(6, 1) * 4.0
    labels = torch.arange(18) % 3  # every prediction right: the NLL keeps falling as the scales grow
    calibrator = VectorScaling.fit(logits, labels)
    assert bool(torch.isfinite(calibrator.scale).all()) and float(calibrator.scale.max()) <= MAX_SCALE
    assert nll(calibrator(logits), labels) < nll(logits, labels)


# ---- isotonic regression ----------------------------------------------------------------------

def sklearn_isotonic(logits, labels, test_logits):
    """Oracle: CalibratedClassifierCV(method="isotonic") around a frozen model that outputs softmax(z)."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    k = logits.shape[1]

    class Softmax(ClassifierMixin, BaseEstimator):
        def fit(self, x, y=None):
            self.classes_ = np.arange(k)
            return self

        def predict_proba(self, x):
            return torch.as_tensor(x, dtype=torch.float64).softmax(1).numpy()

        def predict(self, x):
            return self.predict_proba(x).argmax(1)

    calibrated = CalibratedClassifierCV(FrozenEstimator(Softmax().fit(None)), method="isotonic")
    calibrated.fit(logits.double().numpy(), labels.numpy())
    return calibrated.predict_proba(test_logits.double().numpy())


@pytest.mark.parametrize("k", [2, 5])
def test_isotonic_matches_sklearn_and_maps_are_monotone(k):
    scale, bias = SCALES[:k], BIASES[:k]
    logits, labels = planted(2000, seed=2, scale=scale, bias=bias)
    test_logits, _ = planted(700, seed=3, scale=scale, bias=bias, spread=4.0)  # wider: clipping at both ends
    calibrator = IsotonicCalibration.fit(logits, labels)
    got = calibrator.probabilities(test_logits).numpy()
    np.testing.assert_allclose(got, sklearn_isotonic(logits, labels, test_logits), rtol=0, atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-12)
    # each one-vs-rest map is non-decreasing in p_k (the renormalised output need not be)
    grid = torch.linspace(0, 1, 501, dtype=torch.float64)
    for x, y in calibrator.thresholds:
        mapped = calibrator._interpolate(grid, x, y)
        assert bool((mapped[1:] >= mapped[:-1]).all()) and 0 <= float(mapped.min()) <= float(mapped.max()) <= 1
    # calibrated logits: the log of the probabilities, floored so the NLL stays finite
    floored = torch.as_tensor(got).clamp_min(PROBABILITY_FLOOR)
    torch.testing.assert_close(calibrator(test_logits).softmax(1), floored / floored.sum(1, keepdim=True))


def test_isotonic_all_maps_zero_gives_uniform_like_sklearn():
    # class k is the label only where p_k = 0.6 and absent where p_k is 0.05 or 0.35, so every map
    # g_k is 0 up to 0.35: at p = (1/3, 1/3, 1/3) all three are 0 and the output is uniform
    rows = [[0.6, 0.35, 0.05], [0.05, 0.6, 0.35], [0.35, 0.05, 0.6]]
    logits = torch.tensor(rows * 5, dtype=torch.float64).log()
    labels = torch.tensor([0, 1, 2] * 5)
    test = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.2, -0.4]], dtype=torch.float64)
    calibrator = IsotonicCalibration.fit(logits, labels)
    got = calibrator.probabilities(test).numpy()
    np.testing.assert_allclose(got, sklearn_isotonic(logits, labels, test), atol=1e-12)
    np.testing.assert_allclose(got[0], [1 / 3] * 3, atol=1e-15)
    assert got[1, 0] > 0.99  # p_0 = 0.40 > 0.35: only g_0 is positive


# ---- all methods: before / after, state, registry ---------------------------------------------

def overconfident(n, seed, k=10):
    """The model's softmax(z) is sharper than the truth softmax(s_k * z), s_k in [0.3, 0.7] per class."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 4
    labels = torch.multinomial((logits * torch.linspace(0.3, 0.7, k, dtype=torch.float64)).softmax(1), 1,
                               generator=g).squeeze(1)
    return logits, labels


def metrics(logits, labels):
    stats = CalibrationStats()
    stats.update(logits, labels)
    return stats.compute()


@pytest.mark.parametrize("method", ["temperature", "vector", "isotonic"])
def test_every_method_improves_held_out_nll_and_ece(method, tmp_path):
    val_logits, val_labels = overconfident(4000, seed=0)
    test_logits, test_labels = overconfident(4000, seed=1)
    calibrator = fit_calibrator(method, val_logits, val_labels)
    assert type(calibrator) is CALIBRATORS.get(method)
    before, after = metrics(test_logits, test_labels), metrics(calibrator(test_logits), test_labels)
    # measured: ECE 22.6% -> 2.5% / 1.8% / 3.2%, NLL 1.74 -> 1.39 / 1.29 / 1.38
    assert after["ece"] < 0.2 * before["ece"] and after["nll"] < before["nll"] - 0.3
    if calibrator.keeps_argmax:
        assert after["accuracy"] == before["accuracy"]
    # JSON state round trip: the same outputs, bit for bit
    path = save_calibrator(calibrator, tmp_path / "c.json", fitted_on="validation")
    restored = load_calibrator(path)
    assert json.loads(path.read_text())["fitted_on"] == "validation"
    assert torch.equal(restored(test_logits), calibrator(test_logits))
    assert torch.equal(calibrator_from_state(calibrator.state())(test_logits), calibrator(test_logits))


def test_temperature_calibrator_is_fit_temperature():
    logits, labels = overconfident(500, seed=4)
    calibrator = TemperatureScaling.fit(logits.float(), labels)
    assert calibrator.temperature == fit_temperature(logits.float(), labels)
    assert torch.equal(calibrator(logits.float()), logits.float() / calibrator.temperature)


def test_bad_methods_states_and_files(tmp_path):
    logits, labels = overconfident(50, seed=5, k=4)
    with pytest.raises(ConfigError, match="unknown calibration method 'platt'; choose one of: isotonic, temperature, vector"):
        fit_calibrator("platt", logits, labels)
    with pytest.raises(DataError, match="labels must lie"):
        fit_calibrator("vector", logits, labels + 4)
    with pytest.raises(DataError, match="fitted on 4 classes"):
        VectorScaling.fit(logits, labels)(logits[:, :3])
    with pytest.raises(DataError, match="'scale' must be a list"):
        calibrator_from_state({"method": "vector", "scale": "x", "bias": [0.0]})
    with pytest.raises(DataError, match="'temperature' must be a finite number"):
        calibrator_from_state({"method": "temperature", "temperature": float("nan")})
    with pytest.raises(ConfigError, match="unknown calibration method"):
        calibrator_from_state({"method": "magic"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot parse calibrator"):
        load_calibrator(tmp_path / "bad.json")
    (tmp_path / "foreign.json").write_text('{"method": "temperature", "temperature": 1.0}')
    with pytest.raises(DataError, match="not an auglabel calibrator file"):
        load_calibrator(tmp_path / "foreign.json")
    with pytest.raises(DataError, match="cannot read calibrator"):
        load_calibrator(tmp_path / "missing.json")


def test_gather_without_process_group_orders_by_index():
    logits, labels = overconfident(7, seed=6, k=3)
    index = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    got_logits, got_labels = gather_logits(logits, labels, index)
    order = torch.argsort(index)
    assert torch.equal(got_logits, logits[order]) and torch.equal(got_labels, labels[order])


# ---- auglabel calibrate --method on a run ------------------------------------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from auglabel.engine.config import ComponentConfig, DataConfig, ExperimentConfig, OptimConfig, TrainConfig
    from auglabel.engine.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("calibrators") / "run"
    cfg = ExperimentConfig(data=DataConfig(name="digits", val_size=0.2, train_subset=600),
                           model=ComponentConfig("small_cnn", {}), optim=OptimConfig(lr=0.05, warmup_epochs=0.5),
                           train=TrainConfig(epochs=1, batch_size=64, eval_batch_size=256, seed=0, device="cpu"),
                           run_dir=str(run_dir))
    Trainer(cfg, run_dir, progress=False).fit()
    return run_dir


def _logits(run_dir, split):
    """The run's logits on a split, recomputed without the calibrate command."""
    from auglabel.engine.runs import load_run

    run = load_run(run_dir)
    s = run.splits
    dataset, rows = (s.train_set, s.val_idx) if split == "val" else (s.test_set, s.test_idx)
    with torch.no_grad():
        return run.model(dataset.images[rows].float() / 255), dataset.labels[rows]


def test_calibrate_methods_on_a_run(trained_run, capsys):
    from auglabel.cli import main

    before_files = {p.name for p in trained_run.iterdir()}
    assert main(["calibrate", str(trained_run)]) == 0  # default: temperature, as before
    out = capsys.readouterr().out
    m = json.loads((trained_run / "metrics.json").read_text())
    scaled = m["temperature_scaling"]
    assert set(scaled) == {"temperature", "fitted_on", "before", "after"}
    assert f"temperature T = {scaled['temperature']:.4f}" in out
    val_logits, val_labels = _logits(trained_run, "val")
    assert scaled["temperature"] == pytest.approx(fit_temperature(val_logits, val_labels), rel=1e-6)
    assert (trained_run / "reliability_calibrated.png").is_file()
    assert load_calibrator(trained_run / "calibrator_temperature.json").temperature == scaled["temperature"]

    for method, key in (("vector", "vector_scaling"), ("isotonic", "isotonic_calibration")):
        assert main(["calibrate", str(trained_run), "--method", method]) == 0
        out = capsys.readouterr().out
        result = json.loads((trained_run / "metrics.json").read_text())[key]
        assert result["method"] == method and result["fitted_on"] == "validation"
        assert result["state_file"] == f"calibrator_{method}.json" and result["description"] in out
        assert (trained_run / f"reliability_{method}.png").is_file()
        # the saved calibrator, applied to independently recomputed test logits, gives the "after" metrics
        calibrator = load_calibrator(trained_run / result["state_file"])
        test_logits, test_labels = _logits(trained_run, "test")
        recomputed = metrics(calibrator(test_logits), test_labels)
        for name in ("accuracy", "ece", "nll", "brier"):
            assert result["after"][name] == pytest.approx(recomputed[name], abs=1e-5), name
        assert result["before"] == m["temperature_scaling"]["before"]
    assert json.loads((trained_run / "metrics.json").read_text())["temperature_scaling"] == scaled  # kept
    assert {p.name for p in trained_run.iterdir()} - before_files == {
        "reliability_calibrated.png", "reliability_vector.png", "reliability_isotonic.png",
        "calibrator_temperature.json", "calibrator_vector.json", "calibrator_isotonic.json"}


def test_calibrate_bad_input_is_one_line(trained_run, tmp_path, capsys, monkeypatch):
    from auglabel.cli import main

    snapshot = {p.name: p.read_bytes() for p in trained_run.iterdir()}
    assert main(["calibrate", str(trained_run), "--method", "platt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("auglabel: error: unknown calibration method 'platt'; choose one of: isotonic, temperature, "
                   "vector")
    # a run whose validation split is empty (an old or hand-edited run): refused before anything is fitted
    from auglabel.engine import build

    real = build.load_splits

    def no_validation(cfg, *objects):
        splits = real(cfg, *objects)
        splits.val_idx = splits.val_idx[:0]
        return splits

    monkeypatch.setattr("auglabel.engine.runs.load_splits", no_validation)
    assert main(["calibrate", str(trained_run), "--method", "vector"]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no validation split" in err and len(err.splitlines()) == 1
    assert {p.name: p.read_bytes() for p in trained_run.iterdir()} == snapshot


# ---- two processes, gloo ------------------------------------------------------------------------

def _gloo_worker(rank, world_size, store, run_dir, out_dir):
    from auglabel.commands import calibrate_run

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        # synthetic shards, interleaved like the evaluation loader's (151 and 150 rows)
        logits, labels = overconfident(301, seed=7, k=4)
        logits = logits.float()  # what evaluation passes keep
        positions = torch.arange(301)[rank::world_size]
        fits = {method: fit_calibrator(method, logits[positions], labels[positions], index=positions).state()
                for method in CALIBRATORS.names()}
        everything = torch.arange(301) if rank == 0 else torch.arange(0)  # rank 1 holds nothing
        fits["temperature_one_sided"] = fit_calibrator("temperature", logits[everything], labels[everything],
                                                       index=everything).state()
        # a run: sharded evaluation of both splits, gathered fit, rank 0 writes
        runs = {method: calibrate_run(run_dir, method=method) for method in ("temperature", "isotonic")}
        (out_dir / f"rank{rank}.json").write_text(json.dumps({"fits": fits, "runs": runs}))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_fit_exactly_what_one_process_fits(trained_run, tmp_path):
    """On the same logits the gathered fit is the one-process fit bit for bit; on a run (whose logits
    may differ in the last bits, as the batches differ) the results agree to float precision."""
    from auglabel.commands import calibrate_run

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    # forked, not spawned: the workers inherit this process's imports (torch.optim's first step and
    # scikit-learn cost seconds each in a fresh interpreter)
    import sklearn.isotonic  # noqa: F401
    mp.start_processes(_gloo_worker, args=(2, str(tmp_path / "store"), str(run), tmp_path), nprocs=2, join=True,
                       start_method="fork")
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1]

    logits, labels = overconfident(301, seed=7, k=4)
    expected = {method: fit_calibrator(method, logits.float(), labels).state() for method in CALIBRATORS.names()}
    expected["temperature_one_sided"] = expected["temperature"]
    assert ranks[0]["fits"] == expected

    runs = ranks[0]["runs"]
    assert json.loads((run / "metrics.json").read_text())["isotonic_calibration"] == runs["isotonic"]
    for method in ("temperature", "isotonic"):
        single = calibrate_run(trained_run, method=method)
        assert runs[method]["before"] == pytest.approx(single["before"], abs=1e-6)
        assert runs[method]["after"] == pytest.approx(single["after"], abs=1e-6)
    assert runs["temperature"]["temperature"] == pytest.approx(fit_temperature(*_logits(run, "val")), rel=1e-6)
