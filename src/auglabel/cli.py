"""The ``auglabel`` command line: train, evaluate, calibrate, demo.

User mistakes end with one line ``auglabel: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Sequence

from jsonargparse import ActionConfigFile, ArgumentParser

from .errors import AuglabelError, ConfigError

COMMANDS = {
    "train": "train a model from a YAML config (plus --section.key overrides)",
    "evaluate": "evaluate a run: clean test set, corruptions, perturbations, adversarial, OOD",
    "calibrate": "fit a post-hoc calibrator (temperature, vector, isotonic) on a run's validation split; metrics before and after",
    "demo": "one-hot, AugMix and AugMix + AutoLabel in the test bed: accuracy and calibration, clean and corrupted",
    "compare": "side-by-side table of several runs' metrics (mean ± std over seeds)",
    "data": "dataset tools: 'data corrupt DATASET' writes its -C set (cached)",
    "reproduce": "reproduce a paper's tables in the test bed: 'reproduce autolabel|mixup-calibration|augmix|pls'",
}


def _usage() -> str:
    lines = ["usage: auglabel COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "run 'auglabel COMMAND --help' for a command's options"]
    return "\n".join(lines)


def _train_parser() -> ArgumentParser:
    from .engine.config import ExperimentConfig

    parser = ArgumentParser(prog="auglabel train", description=COMMANDS["train"],
                            usage="auglabel train [CONFIG] [--section.key VALUE ...] [--resume | --overwrite]")
    parser.add_argument("--config", action=ActionConfigFile, help="YAML experiment file")
    parser.add_class_arguments(ExperimentConfig)
    parser.add_argument("--resume", action="store_true", help="continue the run in run_dir from its checkpoint")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    parser.epilog = ALLOW_MODULE_HELP
    return parser


def _experiment_from(namespace: Any):
    from .engine.config import ExperimentConfig

    names = [f.name for f in fields(ExperimentConfig)]
    instantiated = _train_parser().instantiate(namespace)
    return ExperimentConfig(**{name: instantiated[name] for name in names})


ALLOW_MODULE_HELP = (
    "--allow_module PREFIX (repeatable; command line only, a config file cannot set it): also allow "
    "model.params.class_path to name nn.Module classes from module PREFIX (and PREFIX.*) or from a .py "
    "file or folder; the defaults are torch.nn, torchvision.models, timm, auglabel; env AUGLABEL_ALLOW_MODULES "
    "takes comma-separated entries too")


def _pop_allow_module(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--allow_module X`` / ``--allow_module=X`` (comma-separated allowed) out of ``argv``, before
    jsonargparse sees it: not a parser option, so no config file can set it."""
    entries, rest, items = [], [], iter(argv)
    for item in items:
        if item == "--allow_module" or item.startswith("--allow_module="):
            value = item.partition("=")[2] if "=" in item else next(items, None)
            if value is None or value.startswith("-"):
                raise ConfigError("--allow_module needs a module prefix (like mypkg.models) or a path")
            entries += [entry for entry in value.split(",") if entry.strip()] or [value]
        else:
            rest.append(item)
    return entries, rest


def _with_allowed_modules(command):
    """Run ``command`` with the ``--allow_module`` entries of its argv on the custom-model allow-list."""
    @functools.wraps(command)
    def run(argv: Sequence[str]) -> int:
        from .models.custom import allow_modules

        entries, rest = _pop_allow_module(argv)
        with allow_modules(*entries):
            return command(rest)

    return run


@_with_allowed_modules
def cmd_train(argv: Sequence[str]) -> int:
    from .engine.runs import read_run_config
    from .engine.trainer import CONFIG_NAME, Trainer

    argv = list(argv)
    config_path = None
    if argv and not argv[0].startswith("-"):
        config_path = argv[0]
        argv = ["--config", argv[0], *argv[1:]]
    _screen_config_files(argv)
    parser = _train_parser()
    namespace = parser.parse_args(argv)
    if namespace.resume and config_path is None:
        if not namespace.run_dir:
            raise AuglabelError("--resume needs a CONFIG or --run_dir pointing at the run to continue")
        run_config = Path(namespace.run_dir) / CONFIG_NAME
        read_run_config(Path(namespace.run_dir))  # a clear error when it is not a run directory
        namespace = parser.parse_args(["--config", str(run_config), *argv])
    cfg = _experiment_from(namespace)
    run_dir = cfg.run_dir or f"runs/{Path(config_path).stem if config_path else 'run'}-seed{cfg.train.seed}"
    cfg.run_dir = run_dir
    metrics = Trainer(cfg, run_dir, resume=namespace.resume, overwrite=namespace.overwrite).fit()
    _print_metrics(metrics, run_dir)
    return 0


def _screen_config_files(argv: Sequence[str]) -> None:
    """Read every ``--config`` file as plain data before jsonargparse sees it.

    jsonargparse imports any module a config names as a ``class_path`` (or as a section's value)
    before rejecting it, and importing runs the module's top-level code; a config received from
    someone else must not be able to do that.  Each section must be a mapping of the experiment's
    own fields (checked by :meth:`ExperimentConfig.from_dict` on ``yaml.safe_load``); anything else
    is refused with one line before anything is imported.
    """
    import yaml

    from .engine.config import ExperimentConfig

    paths = [value for flag, value in zip(argv, argv[1:]) if flag == "--config"]
    paths += [item.split("=", 1)[1] for item in argv if item.startswith("--config=")]
    for path in paths:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from None
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise ConfigError(f"config {path} must be a mapping of sections, got {type(raw).__name__}")
        for section in ("data", "model", "augment", "labels", "optim", "train"):
            if section == "augment" and isinstance(raw.get(section), list):  # a pipeline: [standard, mixup]
                continue
            if section in raw and not isinstance(raw[section], dict):
                raise ConfigError(f"config {path}: section {section!r} must be a mapping, got {raw[section]!r}")
        ExperimentConfig.from_dict(raw)  # unknown fields (class_path, init_args...) -> one-line ConfigError


def _run_parser(name: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"auglabel {name}", description=COMMANDS[name])
    parser.add_argument("run", type=str, help="run directory written by 'auglabel train'")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:N or auto")
    return parser


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise AuglabelError(f"--threads must be >= 1, got {threads}")
        import torch

        torch.set_num_threads(threads)


def cmd_evaluate(argv: Sequence[str]) -> int:
    from .commands import evaluate_run
    from .robustness.suite import SUITES

    parser = _run_parser("evaluate")
    parser.add_argument("--suite", type=str, default="clean", help=f"comma-separated, from: {','.join(SUITES)}")
    parser.add_argument("--subsample", type=Optional[int], default=None,
                        help="evaluate a stratified subsample of this many test images")
    parser.add_argument("--corruptions", type=Optional[str], default=None,
                        help="comma-separated corruption names (default: all 19)")
    parser.add_argument("--c_dir", type=Optional[str], default=None,
                        help="an existing -C folder (e.g. the official CIFAR-10-C) instead of the generated cache")
    parser.add_argument("--baseline", type=Optional[str], default=None,
                        help="a run evaluated on the same -C set: normalise the mCE by its errors")
    parser.add_argument("--ood_dataset", type=Optional[str], default=None,
                        help="OOD dataset for the AUROC (default per dataset, e.g. digits for fashion_mnist; 'none')")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample, corruptions, attacks, noise")
    parser.add_argument("--reliability_bins", type=str, default="equal_width",
                        help="bins of reliability.png / reliability_corrupted.png: equal_width or equal_mass")
    parser.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads")
    args = parser.parse_args(list(argv))
    _set_threads(args.threads)
    metrics = evaluate_run(args.run, device=args.device, suites=args.suite, subsample=args.subsample,
                           corruptions=args.corruptions, c_dir=args.c_dir, baseline=args.baseline,
                           ood_dataset=args.ood_dataset, seed=args.seed, reliability_bins=args.reliability_bins)
    _print_robustness(metrics, args.run)
    return 0


def cmd_compare(argv: Sequence[str]) -> int:
    from .commands import compare

    parser = ArgumentParser(prog="auglabel compare", description=COMMANDS["compare"])
    parser.add_argument("runs", type=str, nargs="+", help="run directories")
    parser.add_argument("--out", type=Optional[str], default=None, help="also write the Markdown table here")
    parser.add_argument("--csv", type=Optional[str], default=None, help="also write a CSV table here")
    args = parser.parse_args(list(argv))
    print(compare(list(args.runs), out=args.out, csv=args.csv))
    return 0


def cmd_data(argv: Sequence[str]) -> int:
    from .commands import corrupt_dataset

    argv = list(argv)
    if not argv or argv[0] != "corrupt":
        if argv and argv[0] in ("-h", "--help"):
            print("usage: auglabel data corrupt DATASET [--root R] [--out DIR] [--corruptions a,b] "
                  "[--subsample N] [--seed S] [--image_size PX]")
            return 0
        raise AuglabelError(f"unknown data action {argv[0] if argv else ''!r}; use: auglabel data corrupt DATASET")
    parser = ArgumentParser(prog="auglabel data corrupt", description="write a dataset's -C test set")
    parser.add_argument("dataset", type=str, help="fashion_mnist, mnist, cifar10, cifar100, svhn, digits...")
    parser.add_argument("--root", type=Optional[str], default=None, help="the dataset's folder")
    parser.add_argument("--out", type=Optional[str], default=None, help="default: the cache 'evaluate' reads")
    parser.add_argument("--corruptions", type=Optional[str], default=None, help="comma-separated (default all 19)")
    parser.add_argument("--subsample", type=Optional[int], default=None, help="a stratified subsample of the test set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=Optional[int], default=None,
                        help="streamed datasets (image_folder_stream, tar_shards) only: the side test images are decoded at")
    parser.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads")
    args = parser.parse_args(argv[1:])
    _set_threads(args.threads)
    out = corrupt_dataset(args.dataset, root=args.root, out=args.out, corruptions=args.corruptions,
                          subsample=args.subsample, seed=args.seed, image_size=args.image_size)
    print(f"-C set written to {out}")
    return 0


def cmd_calibrate(argv: Sequence[str]) -> int:
    from . import distributed
    from .calibrate import CALIBRATORS
    from .commands import calibrate_run

    parser = _run_parser("calibrate")
    parser.add_argument("--method", type=str, default="temperature",
                        help=f"post-hoc calibrator fitted on the validation split: {', '.join(CALIBRATORS.names())}")
    args = parser.parse_args(list(argv))
    CALIBRATORS.get(args.method)  # one line for an unknown name, before anything is loaded
    ctx = distributed.setup(args.device)  # a process group only under torchrun
    try:
        result = calibrate_run(args.run, device=args.device, method=args.method)
    finally:
        distributed.teardown()
    if not ctx.is_main:
        return 0
    if args.method == "temperature":
        print(f"temperature T = {result['temperature']:.4f} (fitted on the validation split)")
    else:
        print(f"{result['description']} (fitted on the validation split; {result['state_file']})")
    _print_table({"before": result["before"], "after": result["after"]})
    return 0


def cmd_demo(argv: Sequence[str]) -> int:
    from .demo import METHODS, run_demo

    parser = ArgumentParser(prog="auglabel demo", description=COMMANDS["demo"])
    parser.add_argument("--epochs", type=Optional[int], default=None,
                        help="epochs of each run (default: 4 on Fashion-MNIST, 30 on the digits fallback)")
    parser.add_argument("--run_dir", type=str, default=None, help="default: runs/demo-<time>")
    parser.add_argument("--data_root", type=str, default=None)
    parser.add_argument("--subsample", type=int, default=1000, help="test images corrupted for cAcc / cECE")
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--threads", type=Optional[int], default=None, help="torch CPU threads (default: all cores)")
    args = parser.parse_args(list(argv))
    if (args.epochs is not None and args.epochs < 1) or args.subsample < 1:
        raise ConfigError("demo: --epochs and --subsample must be >= 1")
    results, root = run_demo(epochs=args.epochs, run_dir=args.run_dir, data_root=args.data_root,
                             device=args.device, threads=args.threads, subsample=args.subsample)
    for name, label, *_ in METHODS:
        print(f"\n{label}:")
        _print_metrics(results[name], root / name)
    print("\n" + (root / "comparison.md").read_text())
    print(f"plots: {root / 'severity.png'} (accuracy and ECE against severity), "
          f"{root / 'augmix_autolabel' / 'autolabel.png'} (learned labels), */reliability.png")
    return 0


def cmd_reproduce(argv: Sequence[str]) -> int:
    """Train, evaluate and tabulate every config of a paper (resumable); see auglabel.reproduce."""
    from .reproduce.command import run_command

    return run_command(argv)


def _print_table(columns: dict[str, dict[str, float]]) -> None:
    keys = [("accuracy", "accuracy"), ("ece", "ECE"), ("rms_ce", "RMS cal. error"), ("oe", "overconf. error"),
            ("brier", "Brier (0..2)"), ("nll", "NLL")]
    print(f"{'':<16}" + "".join(f"{name:>10}" for name in columns))
    for key, label in keys:
        print(f"{label:<16}" + "".join(f"{col[key]:>10.4f}" for col in columns.values()))


def _print_metrics(metrics: dict[str, Any], run_dir: str | Path) -> None:
    print(f"\n{metrics.get('dataset', '')} test set ({int(metrics.get('count', 0))} images):")
    _print_table({"test": metrics})
    print(f"run directory: {run_dir}  (metrics.json, log.csv, reliability.png, checkpoint.pt)")


def _print_robustness(metrics: dict[str, Any], run_dir: str | Path) -> None:
    """The clean table of the evaluated images, then one line per robustness result."""
    clean = {key[len("clean."):]: value for key, value in metrics.items() if key.startswith("clean.")}
    if "accuracy" in clean:
        scaled = {key: metrics.get(f"temperature.{key}", float("nan")) for key in clean}
        print(f"\n{metrics.get('dataset', '')} test images ({int(clean.get('count', 0))}):")
        _print_table({"test": clean, f"T={metrics.get('temperature.value', float('nan')):.3f}": scaled})
    if "corruption.acc" in metrics:
        kind = "normalised by the baseline" if metrics.get("corruption.mce_normalized") else "unnormalised"
        print(f"corruptions: cAcc {metrics['corruption.acc']:.4f}  cECE {metrics['corruption.ece']:.4f}  "
              f"cRMS {metrics['corruption.rms_ce']:.4f}  mCE {metrics['corruption.mce']:.4f} ({kind})")
    if "perturbation.flip_probability" in metrics:
        print(f"perturbations: mean flip probability {metrics['perturbation.flip_probability']:.5f}")
    adversarial = [f"eps {k.split('.', 1)[1]}: {v:.4f}" for k, v in metrics.items()
                   if k.startswith("adversarial.") and isinstance(v, float)]
    if adversarial:
        print("adversarial accuracy: " + "  ".join(adversarial))
    ood = [f"{k[len('ood.auroc_'):]} {v:.4f}" for k, v in metrics.items() if k.startswith("ood.auroc_")]
    if ood:
        print("OOD AUROC: " + "  ".join(ood))
    _print_ood_details(metrics)
    print(f"run directory: {run_dir}  (metrics.json, robustness.md, plots)")


def _print_ood_details(metrics: dict[str, Any]) -> None:
    """Per OOD set: every score's AUROC / AUPR-in / AUPR-out / FPR at 95% TPR (``ood.<set>.<score>.<metric>``)."""
    columns = (("auroc", "AUROC"), ("aupr_in", "AUPR-in"), ("aupr_out", "AUPR-out"), ("fpr_at_95_tpr", "FPR@95TPR"))
    for name in metrics.get("ood.sets") or []:
        scores = [score for score in metrics.get("ood.scores") or [] if f"ood.{name}.{score}.auroc" in metrics]
        if not scores:
            continue
        print(f"OOD {name} (in-distribution = positive):")
        print(f"  {'score':<12}" + "".join(f"{label:>11}" for _, label in columns))
        for score in scores:
            print(f"  {score:<12}" + "".join(f"{metrics.get(f'ood.{name}.{score}.{key}', float('nan')):>11.4f}"
                                            for key, _ in columns))


HANDLERS = {"train": cmd_train, "evaluate": cmd_evaluate, "calibrate": cmd_calibrate, "demo": cmd_demo,
            "compare": cmd_compare, "data": cmd_data, "reproduce": cmd_reproduce}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in HANDLERS:
        print(f"auglabel: error: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return HANDLERS[command](rest)
    except AuglabelError as exc:  # a stopped (SIGTERM) training exits 143 (errors.PREEMPTED_EXIT_STATUS)
        code = getattr(exc, "exit_code", 2)
        print(f"auglabel: {'error: ' if code == 2 else ''}{exc}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("auglabel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
