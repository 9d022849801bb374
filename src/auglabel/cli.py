"""The ``auglabel`` command line: train, evaluate, calibrate, demo.

User mistakes end with one line ``auglabel: error: ...`` and exit status 2, never a traceback.
"""
from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from jsonargparse import ActionConfigFile, ArgumentParser

from .errors import AuglabelError

COMMANDS = {
    "train": "train a model from a YAML config (plus --section.key overrides)",
    "evaluate": "evaluate a run's checkpoint on its test set",
    "calibrate": "fit temperature scaling on a run's validation split; metrics before and after",
    "demo": "train the small CNN on Fashion-MNIST and report accuracy and calibration",
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
    return parser


def _experiment_from(namespace: Any):
    from .engine.config import ExperimentConfig

    names = [f.name for f in fields(ExperimentConfig)]
    instantiated = _train_parser().instantiate(namespace)
    return ExperimentConfig(**{name: instantiated[name] for name in names})


def cmd_train(argv: Sequence[str]) -> int:
    from .engine.runs import read_run_config
    from .engine.trainer import CONFIG_NAME, Trainer

    argv = list(argv)
    config_path = None
    if argv and not argv[0].startswith("-"):
        config_path = argv[0]
        argv = ["--config", argv[0], *argv[1:]]
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


def _run_parser(name: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"auglabel {name}", description=COMMANDS[name])
    parser.add_argument("run", type=str, help="run directory written by 'auglabel train'")
    parser.add_argument("--device", type=str, default="cpu", help="cpu, cuda, cuda:N or auto")
    return parser


def cmd_evaluate(argv: Sequence[str]) -> int:
    from .commands import evaluate_run

    args = _run_parser("evaluate").parse_args(list(argv))
    metrics = evaluate_run(args.run, device=args.device)
    _print_metrics(metrics, args.run)
    return 0


def cmd_calibrate(argv: Sequence[str]) -> int:
    from .commands import calibrate_run

    args = _run_parser("calibrate").parse_args(list(argv))
    result = calibrate_run(args.run, device=args.device)
    print(f"temperature T = {result['temperature']:.4f} (fitted on the validation split)")
    _print_table({"before": result["before"], "after": result["after"]})
    return 0


def cmd_demo(argv: Sequence[str]) -> int:
    from .commands import run_demo

    parser = ArgumentParser(prog="auglabel demo", description=COMMANDS["demo"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--run_dir", type=str, default=None, help="default: runs/demo-<time>")
    parser.add_argument("--data_root", type=str, default=None)
    parser.add_argument("--device", type=str, default="auto")
    args = parser.parse_args(list(argv))
    metrics, run_dir = run_demo(epochs=args.epochs, run_dir=args.run_dir, data_root=args.data_root,
                                device=args.device)
    _print_metrics(metrics, run_dir)
    return 0


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


HANDLERS = {"train": cmd_train, "evaluate": cmd_evaluate, "calibrate": cmd_calibrate, "demo": cmd_demo}


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
    except AuglabelError as exc:
        print(f"auglabel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("auglabel: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
