"""OOD detection after temperature scaling (the mixup-calibration paper's "+ temperature scaling" row).

Temperature scaling never changes the argmax but does change the max-softmax score, so the AUROC
of ``softmax(z / T)`` differs from the run's ``ood.auroc_*``.  It is computed here on exactly the
images ``auglabel evaluate --suite ood --subsample N`` uses (same subsample, noise and OOD set),
with ``T`` from the run's ``temperature_scaling.temperature``, and cached in the run's
``metrics.json`` under ``ood_temperature_scaled``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import DataError
from .plan import lookup, read_metrics


class TemperatureScaled(nn.Module):
    """``model(x) / temperature``: the temperature-scaled logits of a trained model."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        if not temperature > 0:
            raise DataError(f"temperature must be > 0, got {temperature!r}")
        self.model = model
        self.temperature = float(temperature)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) / self.temperature


def temperature_scaled_ood(run_dir: str | Path, temperature: float, subsample: int | None, seed: int = 0,
                           device: str = "cpu") -> dict[str, Any]:
    """Max-softmax AUROCs of ``logits / temperature`` against Gaussian noise and the default OOD
    dataset, on the images of ``--suite ood`` with the same ``subsample`` and ``seed``.

    Returns ``{temperature, count, seed, auroc_noise[, auroc_<dataset>]}``.
    """
    from ..commands import _device
    from ..engine.runs import load_run
    from ..robustness.ood import gaussian_noise_like, ood_auroc
    from ..robustness.suite import SuiteRequest, _Plan

    dev = _device(device)
    run = load_run(run_dir, dev)
    # the suite's own planner: the same test subsample and OOD images as the run's ood.* keys
    plan = _Plan(run, SuiteRequest(suites=("ood",), subsample=subsample, seed=seed))
    model = TemperatureScaled(run.model.eval(), temperature)
    batch = run.cfg.train.eval_batch_size
    splits = run.splits
    noise = gaussian_noise_like(splits.train_set.images[splits.train_idx], len(plan.images), seed)
    result: dict[str, Any] = {"temperature": float(temperature), "count": len(plan.images), "seed": seed,
                              "auroc_noise": ood_auroc(model, plan.images, noise, batch_size=batch, device=dev)}
    if plan.ood_name is not None:
        result[f"auroc_{plan.ood_name}"] = ood_auroc(model, plan.images, plan.ood_images, batch_size=batch, device=dev)
    return result


def ensure_temperature_scaled_ood(run: Path, subsample: int, device: str = "cpu") -> dict[str, Any] | None:
    """The cached ``ood_temperature_scaled`` of ``run`` (recomputed when T or the count changed).

    None when the run has no temperature yet (not calibrated).
    """
    from ..report.io import write_json_atomic

    metrics = read_metrics(run)
    temperature = lookup(metrics, "temperature_scaling.temperature")
    if temperature is None:
        return None
    cached = metrics.get("ood_temperature_scaled")
    if isinstance(cached, dict) and cached.get("temperature") == temperature and cached.get("count") == subsample:
        return cached
    with torch.no_grad():
        result = temperature_scaled_ood(run, temperature, subsample, device=device)
    metrics = read_metrics(run)  # merged into the current file, like LoadedRun.update_metrics
    metrics["ood_temperature_scaled"] = result
    write_json_atomic(metrics, run / "metrics.json")
    return result


__all__ = ["TemperatureScaled", "ensure_temperature_scaled_ood", "temperature_scaled_ood"]
