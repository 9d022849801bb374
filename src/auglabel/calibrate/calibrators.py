"""The post-hoc calibrators (temperature, vector scaling, isotonic regression) and their registry."""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import DataError
from ..functional.calibration import check_logits_and_labels
from ..registry import Registry
from .fit import PROBABILITY_FLOOR, fit_temperature, fit_vector_scaling

class Calibrator:
    """A post-hoc calibrator: fitted on held-out logits, then maps logits to calibrated logits.

    ``Method.fit(logits, labels)`` returns a fitted calibrator; ``calibrator(logits)`` gives
    calibrated logits (N, K) whose softmax is the calibrated distribution (for isotonic
    regression: log-probabilities), so every metric that takes logits takes them;
    :meth:`probabilities` gives the probabilities themselves.  :meth:`state` is plain JSON and
    :meth:`from_state` rebuilds the same calibrator from it.
    """

    #: registry name (``auglabel calibrate --method NAME``)
    method: str = ""
    #: top-level metrics.json key of ``calibrate``'s before/after result
    metrics_key: str = ""
    #: whether the argmax (hence accuracy) is always unchanged
    keeps_argmax: bool = False

    @classmethod
    def fit(cls, logits: Tensor, labels: Tensor) -> "Calibrator":
        raise NotImplementedError

    def __call__(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def probabilities(self, logits: Tensor) -> Tensor:
        return self(logits).double().softmax(dim=1)

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "Calibrator":
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """What ``calibrate`` records in metrics.json beside the before/after metrics."""
        return {}

    def describe(self) -> str:
        """One line for the terminal and plot titles."""
        return self.method

    def _check_classes(self, logits: Tensor, expected: int) -> None:
        if logits.dim() != 2 or logits.shape[1] != expected:
            raise DataError(f"{self.method} calibrator was fitted on {expected} classes; got logits of shape "
                            f"{tuple(logits.shape)}")


CALIBRATORS: Registry[type[Calibrator]] = Registry("calibration method")


def _number(state: Mapping[str, Any], key: str) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"calibrator state: {key!r} must be a finite number, got {value!r}")
    return float(value)


def _vector(state: Mapping[str, Any], key: str, length: int | None = None) -> Tensor:
    value = state.get(key)
    if (not isinstance(value, list) or not value or (length is not None and len(value) != length)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
        need = f"{length} " if length is not None else ""
        raise DataError(f"calibrator state: {key!r} must be a list of {need}finite numbers")
    return torch.tensor(value, dtype=torch.float64)


@CALIBRATORS.register("temperature")
class TemperatureScaling(Calibrator):
    """``z / T`` with one ``T`` fitted by :func:`fit_temperature` (METHODS.md sec. 1)."""

    method, metrics_key, keeps_argmax = "temperature", "temperature_scaling", True

    def __init__(self, temperature: float):
        if not (math.isfinite(temperature) and temperature > 0):
            raise DataError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)

    @classmethod
    def fit(cls, logits: Tensor, labels: Tensor) -> "TemperatureScaling":
        return cls(fit_temperature(logits, labels))

    def __call__(self, logits: Tensor) -> Tensor:
        return logits / self.temperature

    def state(self) -> dict[str, Any]:
        return {"method": self.method, "temperature": self.temperature}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "TemperatureScaling":
        return cls(_number(state, "temperature"))

    def summary(self) -> dict[str, Any]:
        return {"temperature": self.temperature}

    def describe(self) -> str:
        return f"temperature {self.temperature:.3f}"


@CALIBRATORS.register("vector")
class VectorScaling(Calibrator):
    """``w * z + b`` per class, fitted by :func:`fit_vector_scaling`.  The biases can change the
    predicted class, so accuracy may change too."""

    method, metrics_key = "vector", "vector_scaling"

    def __init__(self, scale: Tensor | list[float], bias: Tensor | list[float]):
        self.scale = torch.as_tensor(scale, dtype=torch.float64).flatten().clone()
        self.bias = torch.as_tensor(bias, dtype=torch.float64).flatten().clone()
        if self.scale.shape != self.bias.shape or self.scale.numel() < 1:
            raise DataError(f"vector scaling needs as many scales as biases, got {self.scale.numel()} and "
                            f"{self.bias.numel()}")
        if not (torch.isfinite(self.scale).all() and torch.isfinite(self.bias).all() and (self.scale > 0).all()):
            raise DataError("vector scaling: scales must be finite and > 0, biases finite")

    @classmethod
    def fit(cls, logits: Tensor, labels: Tensor) -> "VectorScaling":
        return cls(*fit_vector_scaling(logits, labels))

    def __call__(self, logits: Tensor) -> Tensor:
        self._check_classes(logits, self.scale.numel())
        return logits.double() * self.scale.to(logits.device) + self.bias.to(logits.device)

    def state(self) -> dict[str, Any]:
        return {"method": self.method, "scale": self.scale.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "VectorScaling":
        scale = _vector(state, "scale")
        return cls(scale, _vector(state, "bias", len(scale)))

    def summary(self) -> dict[str, Any]:
        return {"scale": self.scale.tolist(), "bias": self.bias.tolist()}

    def describe(self) -> str:
        return (f"vector scaling, {self.scale.numel()} scales in [{float(self.scale.min()):.3f}, "
                f"{float(self.scale.max()):.3f}], biases in [{float(self.bias.min()):.3f}, {float(self.bias.max()):.3f}]")


@CALIBRATORS.register("isotonic")
class IsotonicCalibration(Calibrator):
    """Isotonic regression, one-vs-rest with renormalisation (Zadrozny & Elkan 2002).

    For each class k a non-decreasing map ``g_k`` of ``p_k = softmax(z)_k`` to ``1[y = k]`` is
    fitted (scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``: pool adjacent violators,
    linear between its thresholds, clipped outside them), then ``q = g(p) / sum_k g_k(p_k)``,
    uniform when every ``g_k`` is 0.  With two classes one map is fitted to class 1 and
    ``q_0 = 1 - q_1``.  This is exactly scikit-learn's ``CalibratedClassifierCV(method="isotonic")``
    on a model that outputs ``softmax(z)``.  Renormalisation can change the predicted class.
    The state keeps each map's thresholds, so applying it needs no scikit-learn.
    """

    method, metrics_key = "isotonic", "isotonic_calibration"

    def __init__(self, num_classes: int, thresholds: list[tuple[list[float], list[float]]]):
        expected = 1 if num_classes == 2 else num_classes
        if num_classes < 2 or len(thresholds) != expected:
            raise DataError(f"isotonic calibration of {num_classes} classes needs {expected} maps, "
                            f"got {len(thresholds)}")
        self.num_classes = num_classes
        self.thresholds = []
        for x, y in thresholds:
            x, y = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
            if x.dim() != 1 or x.shape != y.shape or x.numel() < 1 or bool((x[1:] < x[:-1]).any()) \
                    or bool((y[1:] < y[:-1]).any()) or not (torch.isfinite(x).all() and torch.isfinite(y).all()):
                raise DataError("isotonic calibration: each map needs equally long, non-decreasing, finite thresholds")
            self.thresholds.append((x, y))

    @classmethod
    def fit(cls, logits: Tensor, labels: Tensor) -> "IsotonicCalibration":
        import numpy as np
        from sklearn.isotonic import IsotonicRegression

        check_logits_and_labels(logits, labels)
        probs = logits.detach().to("cpu", torch.float64).softmax(dim=1).numpy()
        y = labels.detach().cpu().numpy()
        k = probs.shape[1]
        if k < 2:
            raise DataError("isotonic calibration needs at least 2 classes")
        thresholds = []
        for cls_index in ([1] if k == 2 else range(k)):
            fitted = IsotonicRegression(out_of_bounds="clip").fit(probs[:, cls_index], (y == cls_index).astype(np.float64))
            thresholds.append((fitted.X_thresholds_.tolist(), fitted.y_thresholds_.tolist()))
        return cls(k, thresholds)

    @staticmethod
    def _interpolate(values: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Piecewise-linear through (x, y), clipped to [x_0, x_last] (scikit-learn's predict)."""
        if x.numel() == 1:
            return torch.full_like(values, float(y[0]))
        values = values.clamp(float(x[0]), float(x[-1]))
        right = torch.searchsorted(x, values, right=True).clamp(1, x.numel() - 1)
        left = right - 1
        x0, x1, y0, y1 = x[left], x[right], y[left], y[right]
        width = x1 - x0
        slope = torch.where(width > 0, (y1 - y0) / torch.where(width > 0, width, torch.ones_like(width)),
                            torch.zeros_like(width))
        return y0 + slope * (values - x0)

    def probabilities(self, logits: Tensor) -> Tensor:
        """The calibrated probabilities (N, K) float64 on CPU; may contain exact zeros."""
        self._check_classes(logits, self.num_classes)
        probs = logits.detach().to("cpu", torch.float64).softmax(dim=1)
        if self.num_classes == 2:
            x, y = self.thresholds[0]
            positive = self._interpolate(probs[:, 1].contiguous(), x, y)
            return torch.stack([1.0 - positive, positive], dim=1)
        mapped = torch.stack([self._interpolate(probs[:, k].contiguous(), x, y)
                              for k, (x, y) in enumerate(self.thresholds)], dim=1)
        total = mapped.sum(dim=1, keepdim=True)
        uniform = torch.full_like(mapped, 1.0 / self.num_classes)
        return torch.where(total > 0, mapped / torch.where(total > 0, total, torch.ones_like(total)), uniform)

    def __call__(self, logits: Tensor) -> Tensor:
        return self.probabilities(logits).clamp_min(PROBABILITY_FLOOR).log().to(logits.device)

    def state(self) -> dict[str, Any]:
        return {"method": self.method, "variant": "one-vs-rest, renormalised", "num_classes": self.num_classes,
                "maps": [{"x": x.tolist(), "y": y.tolist()} for x, y in self.thresholds]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "IsotonicCalibration":
        num_classes = state.get("num_classes")
        maps = state.get("maps")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or not isinstance(maps, list) \
                or not all(isinstance(m, Mapping) for m in maps):
            raise DataError("calibrator state: isotonic needs an integer 'num_classes' and a list of 'maps'")
        pairs = []
        for entry in maps:
            x = _vector(entry, "x")
            pairs.append((x.tolist(), _vector(entry, "y", len(x)).tolist()))
        return cls(num_classes, pairs)

    def summary(self) -> dict[str, Any]:
        return {"variant": "one-vs-rest, renormalised", "thresholds": [x.numel() for x, _ in self.thresholds]}

    def describe(self) -> str:
        return f"isotonic regression (one-vs-rest, renormalised; {sum(x.numel() for x, _ in self.thresholds)} thresholds)"


