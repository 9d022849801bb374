"""What the CLI's evaluate, calibrate and demo commands do, as plain functions (usable from Python).

Runs trained on a streamed image folder (``data.name: image_folder_stream``) are evaluated and calibrated from
streaming loaders (evaluation transform, ``data.num_workers`` decoding processes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data.loader import DeviceLoader
from .data.stream_loader import StreamingLoader
from .data.streaming import is_streamed
from .engine.build import loader_for
from .engine.evaluate import evaluate
from .engine.runs import LoadedRun, load_run
from .errors import ConfigError, DataError
from .metrics import CalibrationStats
from .report.plots import reliability_diagram


def _loader(run: LoadedRun, split: str, device: torch.device | str, rank: int = 0,
            world_size: int = 1) -> DeviceLoader | StreamingLoader:
    s = run.splits
    dataset, indices = (s.test_set, s.test_idx) if split == "test" else (s.train_set, s.val_idx)
    return loader_for(dataset, indices, run.cfg.train.eval_batch_size, train=False, seed=run.cfg.train.seed,
                      device=device, rank=rank, world_size=world_size, num_workers=run.cfg.data.num_workers)


def evaluate_run(run_dir: str | Path, device: str = "cpu", **suite: Any) -> dict[str, Any]:
    """Evaluate a run's checkpoint; update metrics.json, robustness.md and the plots.

    Without options: the clean test split (headline metrics and reliability.png, as before).
    ``suite`` takes the fields of :class:`auglabel.robustness.suite.SuiteRequest` (suites,
    subsample, corruptions, c_dir, baseline, ood_dataset, seed, reliability_bins, ...).
    """
    from .robustness.suite import SuiteRequest, evaluate_suite

    return evaluate_suite(run_dir, SuiteRequest(**suite), _device(device))


def corrupt_dataset(dataset: str, root: str | None = None, out: str | None = None,
                    corruptions: str | list[str] | None = None, subsample: int | None = None,
                    seed: int = 0, image_size: int | None = None) -> Path:
    """Write the -C set of a dataset's test split (default: into the cache ``evaluate`` reads).

    A streamed dataset (``image_folder_stream``) needs ``image_size``: its selected test images are decoded at
    that size by the evaluation transform first (``auglabel evaluate RUN --suite corruptions`` does this itself).
    """
    from .data import load_dataset, subsample_indices
    from .robustness.corruption_data import check_corruption_names, corrupted_cache_dir, generate_corrupted_set
    from .robustness.sources import selection_images
    from .robustness.suite import parse_list

    names = check_corruption_names(parse_list(corruptions))
    if is_streamed(dataset) and image_size is None:
        raise ConfigError(f"the streamed dataset {dataset!r} is decoded at a chosen size: pass image_size (or "
                          f"evaluate a run trained on it with --suite corruptions, which uses its data.image_size)")
    options = {"image_size": image_size} if is_streamed(dataset) else {}
    test = load_dataset(dataset, "test", root=root, **options)
    indices = torch.arange(len(test))
    if subsample is not None:
        if subsample > len(test):
            raise ConfigError(f"--subsample {subsample} exceeds the {len(test)} test images of {dataset}")
        indices = subsample_indices(test.labels, subsample, seed)
    images, labels = selection_images(test, indices, purpose="-C generation"), test.labels[indices]
    target = Path(out) if out else corrupted_cache_dir(test.name, indices, seed, images)
    return generate_corrupted_set(images, labels, target, names, seed)


def compare(run_dirs: list[str], out: str | None = None, csv: str | None = None) -> str:
    """The Markdown comparison table of ``run_dirs`` (also written to ``out`` / ``csv`` when given)."""
    from .compare import compare_runs, write_comparison

    comparison = compare_runs(run_dirs)
    write_comparison(comparison, out, csv)
    return comparison.markdown()


def calibrate_run(run_dir: str | Path, device: str = "cpu", method: str = "temperature") -> dict[str, Any]:
    """Post-hoc calibration: fit ``method`` on the clean validation split, report test metrics before/after.

    ``method``: a name of :data:`auglabel.calibrate.CALIBRATORS` (temperature, vector, isotonic).
    The fitted calibrator is saved as ``calibrator_<method>.json`` in the run directory and the
    result merged into metrics.json under the calibrator's key (``temperature_scaling``,
    ``vector_scaling``, ``isotonic_calibration``).  Temperature scaling's result, plot
    (``reliability_calibrated.png``) and key are those of the original command; the others draw
    ``reliability_<method>.png``.  An existing ``robustness.md`` is rewritten, so its clean section
    shows the vector / isotonic results beside temperature scaling.

    Under an initialised process group every rank evaluates its shard of each split, the shards
    are gathered in split order (so the fit is the one-process fit), every rank returns the same
    result and rank 0 writes the files.
    """
    from . import distributed
    from .calibrate import CALIBRATORS, calibrator_path, fit_calibrator, gather_logits, save_calibrator

    factory = CALIBRATORS.get(method)  # an unknown name fails before the run is loaded
    shard = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed.is_distributed() else (0, 1)
    dev = _device(device, local_rank=_local_rank()) if shard[1] > 1 else _device(device)
    run = load_run(run_dir, dev)
    if len(run.splits.val_idx) == 0:
        raise DataError(f"{run.run_dir} has no validation split (data.val_size): calibration is fitted on the "
                        f"clean validation split, so retrain with --data.val_size > 0")

    def logits_of(split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        loader = _loader(run, split, dev, *shard)
        try:
            _, logits, labels = evaluate(run.model, loader, keep_logits=True, reduce=False)
        finally:
            loader.close()
        return logits, labels, torch.arange(len(loader.indices))[shard[0]::shard[1]]

    val_logits, val_labels, val_index = logits_of("val")
    calibrator = fit_calibrator(factory.method, val_logits, val_labels, index=val_index)
    test_logits, test_labels, test_index = logits_of("test")
    if shard[1] > 1:
        test_logits, test_labels = gather_logits(test_logits, test_labels, test_index)
        test_logits = test_logits.float()  # the dtype a single process evaluates in
    before, after = CalibrationStats(), CalibrationStats()
    before.update(test_logits, test_labels)
    after.update(calibrator(test_logits), test_labels)
    if factory.method == "temperature":
        result = {"temperature": calibrator.temperature, "fitted_on": "validation", "before": before.compute(),
                  "after": after.compute()}
        plot, title = "reliability_calibrated.png", f"{run.cfg.data.name} test, temperature {calibrator.temperature:.3f}"
    else:
        result = {"method": factory.method, "fitted_on": "validation", "description": calibrator.describe(),
                  "state_file": calibrator_path(run.run_dir, factory.method).name, **calibrator.summary(),
                  "before": before.compute(), "after": after.compute()}
        plot, title = f"reliability_{factory.method}.png", f"{run.cfg.data.name} test, {factory.method} calibration"
    if shard[0] == 0:
        save_calibrator(calibrator, calibrator_path(run.run_dir, factory.method), fitted_on="validation",
                        validation_count=int(len(run.splits.val_idx)), epoch=run.epoch)
        reliability_diagram(after.bins(), run.run_dir / plot, title=title)
        metrics = run.update_metrics({factory.metrics_key: result})
        if (run.run_dir / "robustness.md").is_file():  # its clean section shows the calibrators side by side
            from .report.markdown import write_robustness_report

            write_robustness_report(metrics, run.run_dir / "robustness.md", title=str(run.run_dir))
    distributed.barrier()
    return result


def _local_rank() -> int:
    import os

    return int(os.environ.get("LOCAL_RANK", "0"))


def _device(name: str, local_rank: int = 0) -> torch.device:
    from .distributed import resolve_device

    return resolve_device(name, local_rank)
