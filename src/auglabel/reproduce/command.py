"""``auglabel reproduce PAPER [options]``: the command line of :func:`auglabel.reproduce.reproduce`."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Mapping, Optional, Sequence

from jsonargparse import ArgumentParser

from ..errors import ConfigError
from .papers import PAPERS, Paper
from .plan import Settings, benchmark_corruptions

DESCRIPTION = "train and evaluate every config of a paper's tables over seeds; mean ± std tables and plots"
USAGE = ("auglabel reproduce PAPER [--seeds 0 1 2] [--jobs 2] [--threads 1] [--runs DIR] [--out DIR] "
         "[--scale small|paper|paper_wrn] [--override section.key=value ...] [--groups G ...] [--subsample N] "
         "[--adv_subsample N] [--ood_subsample N] [--p_subsample N] [--corruptions a,b] [--fresh] [--dry_run] "
         "[--report_only]")


def build_parser(papers: Mapping[str, Paper] = PAPERS) -> ArgumentParser:
    parser = ArgumentParser(prog="auglabel reproduce", description=DESCRIPTION, usage=USAGE)
    parser.add_argument("paper", type=str, help=f"one of: {', '.join(papers)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained / evaluated at the same time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--runs", type=Optional[str], default=None,
                        help="run directories <runs>/<stem>-seed<seed> (default runs/testbed, "
                             "runs/testbed-<scale> at another scale)")
    parser.add_argument("--out", type=Optional[str], default=None, help="results folder (default <runs>/results/<paper>)")
    parser.add_argument("--scale", type=str, default="small",
                        help="small (the test bed, CPU), paper (adds configs/testbed/scale/paper.yaml: "
                             "PreAct ResNet-18, full training set, 200 epochs, train.device cuda, bf16) or "
                             "paper_wrn (scale/paper_wrn.yaml: the same with WRN-28-10)")
    parser.add_argument("--override", action="append", default=[],
                        help="section.key=value passed to every training (repeatable), e.g. train.device=cpu")
    parser.add_argument("--groups", type=str, nargs="+", default=None, help="only these tables (titles or slugs)")
    parser.add_argument("--subsample", type=int, default=1000, help="test images corrupted for the -C evaluation")
    parser.add_argument("--adv_subsample", type=int, default=200, help="test images attacked for PGD-50 accuracy")
    parser.add_argument("--ood_subsample", type=int, default=1000, help="test images (and noise / OOD images) for OOD AUROC")
    parser.add_argument("--p_subsample", type=int, default=300, help="test images of the -P flip probability")
    parser.add_argument("--corruptions", type=Optional[str], default=None,
                        help="comma-separated -C corruptions (default: the 15 benchmark corruptions)")
    parser.add_argument("--fresh", action="store_true", help="retrain and re-evaluate every run of the paper")
    parser.add_argument("--dry_run", action="store_true", help="print the planned jobs and steps; run nothing")
    parser.add_argument("--report_only", action="store_true",
                        help="train and evaluate nothing: tabulate the runs that are finished (cells say n=k)")
    return parser


def settings_from(args, paper: Paper) -> Settings:
    """The :class:`Settings` of parsed arguments, with the scale's default folders."""
    runs = Path(args.runs) if args.runs else Path("runs/testbed" if args.scale == "small" else f"runs/testbed-{args.scale}")
    corruptions = [c.strip() for c in args.corruptions.split(",") if c.strip()] if args.corruptions else None
    return Settings(runs=runs, out=Path(args.out) if args.out else runs / "results" / paper.name,
                    seeds=list(args.seeds), jobs=args.jobs, threads=args.threads, scale=args.scale,
                    overrides=list(args.override), subsample=args.subsample, adv_subsample=args.adv_subsample,
                    ood_subsample=args.ood_subsample, p_subsample=args.p_subsample,
                    corruptions=corruptions if corruptions is not None else benchmark_corruptions(),
                    groups=args.groups, fresh=args.fresh, dry_run=args.dry_run,
                    report_only=args.report_only)


def run_command(argv: Sequence[str], papers: Mapping[str, Paper] = PAPERS) -> int:
    """Parse ``argv`` (after ``reproduce``) and run the reproduction; ``papers`` is the registry to use."""
    from .pipeline import reproduce

    argv = list(argv)
    args = build_parser(papers).parse_args(argv)
    if args.paper not in papers:
        raise ConfigError(f"unknown paper {args.paper!r}; choose from: {', '.join(papers)}")
    paper = papers[args.paper]
    reproduce(paper, settings_from(args, paper), command="auglabel reproduce " + shlex.join(argv))
    return 0


__all__ = ["DESCRIPTION", "build_parser", "run_command", "settings_from"]
