"""Temperature scaling: recovers a planted temperature, agrees with a scipy bounded search,
never raises the NLL, and rejects bad input."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from auglabel.calibrate import MAX_TEMPERATURE, MIN_TEMPERATURE, fit_temperature
from auglabel.errors import ConfigError, DataError


def planted(true_temperature, n=3000, k=10, seed=0):
    """Logits z and labels drawn from softmax(z / T_true): T_true is the NLL-optimal temperature in the limit."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64) * 4
    labels = torch.multinomial((logits / true_temperature).softmax(1), 1, generator=g).squeeze(1)
    return logits, labels


def nll(logits, labels, temperature):
    return float(F.cross_entropy(logits.double() / temperature, labels))


def scipy_temperature(logits, labels):
    """Independent oracle: bounded Brent search over log T of a numpy NLL."""
    z, y = logits.double().numpy(), labels.numpy()

    def objective(log_t):
        scaled = z / np.exp(log_t)
        return float(np.mean(logsumexp(scaled, axis=1) - scaled[np.arange(len(y)), y]))

    bounds = (np.log(MIN_TEMPERATURE), np.log(MAX_TEMPERATURE))
    return float(np.exp(minimize_scalar(objective, bounds=bounds, method="bounded", options={"xatol": 1e-9}).x))


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_recovers_planted_temperature(true_temperature):
    logits, labels = planted(true_temperature)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.08)
    assert fitted == pytest.approx(scipy_temperature(logits, labels), rel=1e-5)
    assert nll(logits, labels, fitted) <= nll(logits, labels, 1.0) + 1e-12


def test_float32_logits_and_determinism():
    logits, labels = planted(2.0, n=1000, seed=1)
    fitted = fit_temperature(logits.float(), labels)
    assert isinstance(fitted, float)
    assert fitted == fit_temperature(logits.float(), labels)
    assert fitted == pytest.approx(scipy_temperature(logits.float(), labels), rel=1e-4)


def test_nll_never_rises_on_unrelated_labels():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(400, 5, generator=g) * 6
    labels = torch.randint(0, 5, (400,), generator=g)  # labels independent of the logits
    fitted = fit_temperature(logits, labels)
    assert fitted > 1.0  # confident but random predictions must be softened
    assert nll(logits, labels, fitted) <= nll(logits, labels, 1.0)


def test_separable_data_caps_temperature_without_overflow():
    logits = torch.eye(3).repeat(5, 1) * 5.0
    labels = torch.arange(15) % 3  # every prediction right: the NLL keeps falling as T -> 0
    fitted = fit_temperature(logits, labels)
    assert MIN_TEMPERATURE <= fitted < 1.0
    assert nll(logits, labels, fitted) < nll(logits, labels, 1.0)


def test_bad_inputs():
    logits, labels = planted(1.0, n=20)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="max_iter"):
            fit_temperature(logits, labels, max_iter=bad)
    with pytest.raises(DataError, match="labels must have shape"):
        fit_temperature(logits, labels[:10])
    with pytest.raises(DataError, match="labels must lie"):
        fit_temperature(logits, labels + 10)
    with pytest.raises(DataError, match="0 rows"):
        fit_temperature(logits[:0], labels[:0])
    with pytest.raises(DataError, match="NaN"):
        fit_temperature(logits * float("nan"), labels)
