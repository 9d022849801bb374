"""``auglabel reproduce``: table cells, relative mCE, step planning, shared stems, the OOD
temperature wrapper, CLI errors, and one tiny paper really run end to end (twice: resumed)."""
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from auglabel.cli import main
from auglabel.reproduce import PAPERS, Group, Paper, Settings, mean_std_cell
from auglabel.reproduce.command import run_command
from auglabel.reproduce.ood import TemperatureScaled
from auglabel.reproduce.papers import stem_suites
from auglabel.reproduce.plan import Job, busy_elsewhere, lookup, plan_jobs, planned_steps
from auglabel.reproduce.report import write_report
from auglabel.reproduce.runner import JobResult, eta_seconds
from auglabel.reproduce.tables import (add_derived, cell, group_table, label_diagnostics, ood_table,
                                       relative_mce)

CORRUPTIONS = ("gaussian_noise", "contrast")


def _settings(tmp_path, **kw):
    base = dict(runs=tmp_path / "runs", out=tmp_path / "out", seeds=[0], jobs=1, threads=1, subsample=50,
                ood_subsample=50, corruptions=list(CORRUPTIONS))
    base.update(kw)
    return Settings(**base).validate()


def _fake_metrics(seed, acc=0.8, set_id="abc", errors=None):
    """A hand-built metrics.json of a finished, fully evaluated run."""
    errors = errors or {name: [0.1 * (s + 1) + 0.01 * seed for s in range(5)] for name in CORRUPTIONS}
    cells = {name: [{"accuracy": 1 - e, "ece": e / 2, "rms_ce": e / 3} for e in errs] for name, errs in errors.items()}
    per_severity = {str(s + 1): {"acc": statistics.mean(1 - errors[n][s] for n in errors),
                                 "ece": statistics.mean(errors[n][s] / 2 for n in errors), "rms_ce": 0.1}
                    for s in range(5)}
    return {"accuracy": acc + 0.01 * seed, "ece": 0.05 + 0.01 * seed, "oe": 0.03, "rms_ce": 0.07, "nll": 0.5,
            "brier": 0.3, "train_wall_time_s": 100.0 + seed,
            "temperature_scaling": {"temperature": 1.5, "before": {"ece": 0.05}, "after": {"ece": 0.02 + 0.001 * seed}},
            "temperature.ece": 0.9,  # the -C subsample's value: the tables must not read it
            "best_val": {"epoch": 20 + seed, "val_accuracy": 0.8, "accuracy": 0.79, "ece": 0.04},
            "clean.accuracy": acc, "clean.ece": 0.05, "corruption.acc": 0.7 - 0.01 * seed, "corruption.ece": 0.1,
            "corruption.rms_ce": 0.12, "corruption.count": 50, "corruption.names": list(CORRUPTIONS),
            "corruption.set_id": set_id, "corruption.per_type_severity": cells, "corruption.per_severity": per_severity,
            "perturbation.flip_probability": 0.02, "perturbation.count": 300}


# ---- pure pieces ----

def test_mean_std_cells_match_statistics():
    values = [0.81, 0.79, 0.84]
    assert mean_std_cell(values) == f"{statistics.mean(values) * 100:.2f} ± {statistics.stdev(values) * 100:.2f}"
    assert mean_std_cell([0.5]) == "50.00"
    assert mean_std_cell([10.0, 12.0], scale=1.0, digits=0) == "11 ± 1"
    assert cell([None, None]) == "—"
    assert cell([0.1, None, 0.3]) == mean_std_cell([0.1, 0.3]) + " (n=2)"


def test_lookup_flat_then_nested():
    metrics = {"adversarial.0.02": 0.4, "temperature_scaling": {"after": {"ece": 0.01}}, "best_val": {"epoch": 7}}
    assert lookup(metrics, "adversarial.0.02") == 0.4
    assert lookup(metrics, "temperature_scaling.after.ece") == 0.01
    assert lookup(metrics, "best_val.epoch") == 7
    assert lookup(metrics, "best_val.ece") is None and lookup(metrics, "nothing.here") is None


def test_relative_mce_against_hand_computation():
    model = {"gaussian_noise": [0.1, 0.2, 0.3, 0.4, 0.5], "contrast": [0.05, 0.05, 0.1, 0.1, 0.2]}
    base = {"gaussian_noise": [0.2, 0.3, 0.4, 0.5, 0.6], "contrast": [0.1, 0.1, 0.2, 0.2, 0.4]}
    expected = (sum(model["gaussian_noise"]) / sum(base["gaussian_noise"]) + sum(model["contrast"]) / sum(base["contrast"])) / 2
    m, b = _fake_metrics(0, errors=model), _fake_metrics(0, errors=base)
    assert relative_mce(m, b) == pytest.approx(expected, rel=1e-12)
    assert relative_mce(m, _fake_metrics(0, errors=base, set_id="other")) is None  # different -C sets
    runs = {"standard": {0: b, 1: _fake_metrics(1, errors=base)}, "augmix": {0: m}}
    add_derived(runs, [Group("g", "r", (("standard", "s"), ("augmix", "a")), baseline="standard")])
    assert runs["augmix"][0]["derived.mce_relative"] == pytest.approx(expected)
    assert runs["standard"][1]["derived.mce_relative"] == pytest.approx(1.0)
    assert runs["augmix"][0]["derived.corruption_error"] == pytest.approx(1 - m["corruption.acc"])


def test_group_table_cells_and_missing_values():
    runs = [_fake_metrics(0), _fake_metrics(1)]
    del runs[1]["best_val"]
    group = Group("AT", "Table 4", (("at", "AT"), ("ccat", "CCAT")), suites=("adversarial",))
    for m in runs:
        m.update({"adversarial.0.02": 0.5, "adversarial.0.03": 0.4, "adversarial.0.04": 0.3})
    text = group_table(group, {"at": runs})
    header, rule, at, ccat = text.splitlines()
    assert "ECE after TS %" in header and "PGD-50 acc ε=0.03 %" in header and header.count("|") == rule.count("|")
    cells = [c.strip() for c in at.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    row = dict(zip(columns, cells))
    assert row["Acc %"] == mean_std_cell([m["accuracy"] for m in runs])
    assert row["ECE after TS %"] == mean_std_cell([0.02, 0.021])  # temperature_scaling.after, not temperature.ece
    assert row["best-val epoch"] == "20.0 (n=1)"
    assert row["train s/run"] == "100 ± 1"
    assert set(ccat.strip("|").split("|")[1:]) == {" — "}


def test_planned_steps_skip_what_metrics_json_holds(tmp_path):
    settings = _settings(tmp_path)
    job = Job("x", 0, tmp_path / "x.yaml", tmp_path / "runs" / "x-seed0", tmp_path / "runs" / "x.log", ("ood",))
    assert job.steps(settings) == ["train", "calibrate", "corruptions", "ood"]  # no run directory yet
    job.run.mkdir(parents=True)
    (job.run / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    assert job.steps(settings) == ["calibrate", "corruptions", "ood"]
    full = _fake_metrics(0)
    full.update({"ood.auroc_noise": 0.9, "ood.count": 50})
    (job.run / "metrics.json").write_text(json.dumps(full))
    assert job.steps(settings) == []
    assert planned_steps(full, ("ood",), _settings(tmp_path, subsample=60)) == ["corruptions"]
    assert planned_steps(full, ("ood",), _settings(tmp_path, corruptions=["contrast"])) == ["corruptions"]
    assert planned_steps(full, ("ood", "perturbations"), _settings(tmp_path, ood_subsample=70)) == ["ood"]
    assert planned_steps(full, ("adversarial",), settings) == ["adversarial"]
    assert planned_steps(full, (), _settings(tmp_path, fresh=True)) == ["train", "calibrate", "corruptions"]


def test_shared_stems_train_once():
    jobs = plan_jobs(PAPERS["autolabel"], PAPERS["autolabel"].groups, Settings(runs=Path("r"), out=Path("o")))
    assert len(jobs) == 45 and len({job.run for job in jobs}) == 45
    assert sum(job.stem == "onehot" for job in jobs) == 3
    assert all(job.suites == ("adversarial",) for job in jobs[:12])  # the slow ones first
    calibration = plan_jobs(PAPERS["mixup-calibration"], PAPERS["mixup-calibration"].groups,
                            Settings(runs=Path("r"), out=Path("o")))
    assert len(calibration) == 27 and all(job.suites == ("ood",) for job in calibration)
    shared = stem_suites([Group("a", "", (("onehot", "x"), ("augmix", "y"))),
                          Group("b", "", (("onehot", "z"),), suites=("ood",)),
                          Group("c", "", (("onehot", "w"),), suites=("adversarial",))])
    assert shared == {"onehot": ("adversarial", "ood"), "augmix": ()}
    stems = {stem for paper in PAPERS.values() for group in paper.groups for stem in group.stems}
    assert all(PAPERS["autolabel"].config(stem).is_file() for stem in stems)


def test_temperature_wrapper_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    from auglabel.robustness.ood import ood_auroc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 10))
    with torch.no_grad():
        model[1].weight.mul_(8.0)  # spread-out random logits
    inside, outside = torch.rand(60, 1, 4, 4), torch.rand(40, 1, 4, 4) ** 2
    for temperature in (0.3, 1.0, 2.5):
        scaled = TemperatureScaled(model, temperature)
        with torch.no_grad():
            scores = torch.cat([model(inside), model(outside)]) / temperature
        oracle = roc_auc_score([1] * 60 + [0] * 40, scores.softmax(dim=1).amax(dim=1).numpy())
        assert ood_auroc(scaled, inside, outside) == pytest.approx(oracle, abs=1e-9)
        assert torch.equal(scaled(inside).argmax(1), model(inside).argmax(1))


def test_eta_uses_family_means():
    def result(stem, wall, trained=True):
        job = Job(stem, 0, Path(), Path(), Path(), ())
        return JobResult(job, ["train", "calibrate"] if trained else ["calibrate"], wall - 10, 10.0)

    done = [result("augmix", 200), result("augmix_jsd", 400), result("at", 1000), result("onehot", 50, trained=False)]
    assert eta_seconds(done, [("augmix_autolabel", True), ("onehot", False)], jobs=2) == pytest.approx((300 + 50) / 2)
    assert eta_seconds(done, [("ccat", True)], jobs=1) == pytest.approx(statistics.mean([200, 400, 1000]))
    assert eta_seconds([], [("ccat", True)], jobs=1) is None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_busy_elsewhere_finds_a_hand_started_process(tmp_path):
    run = tmp_path / "runs" / "x-seed0"
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "auglabel", "train",
                                "--run_dir", str(run)], cwd=tmp_path)
    try:
        for _ in range(100):  # until the child has exec'd
            if b"auglabel" in (Path("/proc") / str(process.pid) / "cmdline").read_bytes():
                break
            time.sleep(0.05)
        found = busy_elsewhere(run)
        assert found is not None and found[0] == process.pid
        assert busy_elsewhere(tmp_path / "runs" / "other") is None
    finally:
        process.kill()
        process.wait()


# ---- reports from hand-built runs ----

def test_report_of_the_augmix_paper_from_fake_runs(tmp_path):
    paper = PAPERS["augmix"]
    stems = paper.groups[0].stems
    by_stem = {stem: {seed: _fake_metrics(seed, acc=0.8 + 0.02 * i) for seed in (0, 1)} for i, stem in enumerate(stems)}
    add_derived(by_stem, paper.groups)
    runs = {stem: list(per_seed.values()) for stem, per_seed in by_stem.items()}
    dirs = {stem: [tmp_path / f"{stem}-seed{s}" for s in (0, 1)] for stem in stems}
    settings = _settings(tmp_path, seeds=[0, 1])
    written = write_report(paper, list(paper.groups), runs, dirs, {s: [0, 1] for s in stems}, settings,
                           "auglabel reproduce augmix", 61.0, tmp_path / "out")
    text = (tmp_path / "out" / "table.md").read_text()
    assert "auglabel reproduce augmix" in text and "1.0 min" in text
    standard = next(line for line in text.splitlines() if line.startswith("| standard"))
    assert "100.00 ± 0.00" in standard  # mCE of the baseline relative to itself
    assert {p.name for p in written} == {"table.md", "results.json", "severity_augmix.png"}
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["seed"] for r in results["runs"]["augmix"]] == [0, 1]


def test_autolabel_diagnostics_and_ood_table(tmp_path):
    run = tmp_path / "a-seed0"
    run.mkdir()
    header = "epoch,group,bucket,distance_lo,distance_hi,t,val_count,val_accuracy,val_confidence,val_ece,val_gap,val_gap_se"
    rows = [f"{e},1,{b},{(b - 1) / 2},{b / 2},{1 - 0.1 * b * e},10,0.8,{0.9 if e > 1 else 0.7},0.1,0.1,0.01"
            for e in (1, 2, 3) for b in (1, 2)]
    (run / "autolabel.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    text = label_diagnostics(["a", "b"], {"a": [run], "b": []})
    line_a = text.splitlines()[2]
    assert line_a.startswith("| a | ") and "100.00" in line_a  # every update at epochs 2+ over-confident
    assert mean_std_cell([statistics.mean([0.7, 0.4])], 1.0) in line_a
    assert text.splitlines()[3] == "| b | — | — | — | — |"
    from auglabel.reproduce.plots import plot_learned_labels

    assert plot_learned_labels([("a", "A"), ("b", "B")], {"a": [run]}, tmp_path / "labels.png").stat().st_size > 0
    group = Group("C", "", (("onehot", "one-hot"), ("mixup", "mixup")), suites=("ood",))
    runs = {"onehot": [{"ood.auroc_noise": 0.9, "ood_temperature_scaled": {"auroc_noise": 0.95}}]}
    lines = ood_table(group, runs, "onehot", None).splitlines()
    assert lines[2:] == ["| one-hot | 90.00 |", "| one-hot + temperature scaling | 95.00 |", "| mixup | — |"]


# ---- the command line ----

def _fails(capsys, argv, fragment):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


def test_cli_errors(capsys, tmp_path):
    _fails(capsys, ["reproduce", "tables-of-nowhere"], "unknown paper 'tables-of-nowhere'; choose from: autolabel")
    _fails(capsys, ["reproduce", "autolabel", "--groups", "nope", "--dry_run"], "no group 'nope'")
    _fails(capsys, ["reproduce", "augmix", "--override", "epochs", "--dry_run"], "section.key=value")
    _fails(capsys, ["reproduce", "augmix", "--scale", "huge", "--dry_run"], "--scale")
    _fails(capsys, ["reproduce", "augmix", "--corruptions", "lava", "--dry_run"], "lava")


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dry run started something")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr("auglabel.commands.corrupt_dataset", forbidden)
    runs = tmp_path / "runs"
    (runs / "onehot-seed0").mkdir(parents=True)
    (runs / "onehot-seed0" / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))
    assert main(["reproduce", "mixup-calibration", "--dry_run", "--runs", str(runs), "--seeds", "0", "1"]) == 0
    out = capsys.readouterr().out
    assert "9 configs x 2 seeds = 18 jobs" in out and "0 already done, 18 to run" in out
    assert f"{runs / 'onehot-seed0'}: calibrate, corruptions, ood" in out
    assert f"{runs / 'feature_mixup-seed1'}: train, calibrate, corruptions, ood" in out
    assert "nothing was run" in out
    assert sorted(p.name for p in runs.iterdir()) == ["onehot-seed0"]


def test_deprecated_script_forwards_to_reproduce(tmp_path):
    script = Path(__file__).resolve().parent.parent / "scripts" / "reproduce_autolabel.py"
    done = subprocess.run([sys.executable, str(script), "--dry_run", "--runs", str(tmp_path), "--seeds", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "deprecated" in done.stderr and "15 configs x 1 seeds = 15 jobs" in done.stdout


# ---- end to end: a tiny paper on digits ----

def _tiny_paper(tmp_path, **labels):
    configs = tmp_path / "configs"
    configs.mkdir(exist_ok=True)
    raw = {"data": {"name": "digits", "val_size": 0.2}, "model": {"name": "small_cnn"},
           "labels": labels or {"name": "onehot"}, "optim": {"lr": 0.05, "warmup_epochs": 0.5},
           "train": {"epochs": 1, "batch_size": 64, "eval_batch_size": 256, "device": "cpu"}}
    (configs / "tiny.yaml").write_text(yaml.safe_dump(raw))
    return Paper("tiny", "A tiny paper", (Group("Clean", "Table 1", (("tiny", "tiny"),)),
                                          Group("OOD", "Table 2", (("tiny", "tiny again"),), suites=("ood",))),
                 dataset="digits", ood_reference="tiny", calibration_plot=True, configs=configs,
                 confidence_study=("tiny",))


def test_tiny_paper_end_to_end_then_reused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    paper = _tiny_paper(tmp_path)
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["tiny", "--seeds", "0", "--jobs", "1", "--runs", str(runs), "--out", str(out), "--subsample", "50",
            "--ood_subsample", "50", "--corruptions", ",".join(CORRUPTIONS)]
    assert run_command(argv, papers={"tiny": paper}) == 0
    first = capsys.readouterr().out
    assert "1 configs x 1 seeds = 1 jobs" in first and "[1/1] tiny seed 0: trained" in first and "ETA 0 s" in first
    table = (out / "table.md").read_text()
    assert "auglabel reproduce tiny --seeds 0" in table and "| tiny again |" in table
    assert "| tiny again + temperature scaling |" in table
    results = json.loads((out / "results.json").read_text())
    metrics = results["runs"]["tiny"][0]["metrics"]
    assert metrics["corruption.count"] == 50 and metrics["corruption.names"] == list(CORRUPTIONS)
    assert "temperature_scaling" in metrics and metrics["ood_temperature_scaled"]["count"] == 50
    assert {"severity_clean.png", "severity_ood.png", "calibration.png", "winning_scores.png",
            "reliability_temperature.png"} <= {p.name for p in out.iterdir()}
    study = table.split("## Confidence before and after temperature scaling")[1]
    line = next(line for line in study.splitlines() if line.startswith("| tiny"))
    row = [c.strip() for c in line.strip("|").split("|")][1:]
    assert row[0] == f"{metrics['temperature_scaling']['temperature']:.3f}"
    from auglabel.reproduce.confidence import test_logits, winning_scores

    logits, _ = test_logits(runs / "tiny-seed0")
    assert row[1] == f"{winning_scores(logits).mean() * 100:.2f}"
    # T = 1 gives back the suite's own AUROC: the wrapper scores exactly the images of --suite ood
    from auglabel.reproduce.ood import temperature_scaled_ood

    assert temperature_scaled_ood(runs / "tiny-seed0", 1.0, 50)["auroc_noise"] == metrics["ood.auroc_noise"]

    log, checkpoint = runs / "tiny-seed0.log", runs / "tiny-seed0" / "checkpoint.pt"
    log_text, mtime = log.read_text(), checkpoint.stat().st_mtime_ns
    assert log_text.count(" train ") == 1
    assert run_command(argv, papers={"tiny": paper}) == 0
    second = capsys.readouterr().out
    assert "1 already done, 0 to run" in second and "trained" not in second
    assert log.read_text() == log_text and checkpoint.stat().st_mtime_ns == mtime

    # --report_only: a second seed that never ran is left out, nothing is trained, the table is rewritten
    (out / "table.md").unlink()
    assert run_command(argv[:1] + ["--seeds", "0", "1"] + argv[3:] + ["--report_only"], papers={"tiny": paper}) == 0
    third = capsys.readouterr().out
    assert "trained" not in third and not (runs / "tiny-seed1").exists()
    assert "| tiny |" in (out / "table.md").read_text() and log.read_text() == log_text
    other = Paper("tiny", "A tiny paper", (Group("Clean", "Table 1", (("tiny", "tiny"), ("never", "never")),
                                                 columns=("distortion",)),),
                  dataset="digits", configs=paper.configs)
    (paper.configs / "never.yaml").write_text((paper.configs / "tiny.yaml").read_text())
    assert run_command(argv[:1] + ["--seeds", "0"] + argv[3:] + ["--report_only"], papers={"tiny": other}) == 0
    fourth = capsys.readouterr().out
    assert "left out of the tables: never" in fourth and "| never |" not in (out / "table.md").read_text()
    assert "| error % |" in (out / "table.md").read_text()  # a group's own columns survive the missing row


def test_failed_job_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    paper = _tiny_paper(tmp_path, name="magic")
    monkeypatch.setitem(PAPERS, "tiny", paper)
    monkeypatch.setattr("auglabel.reproduce.pipeline._generate_corruptions", lambda *a: None)
    code = main(["reproduce", "tiny", "--seeds", "0", "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"auglabel: error: tiny seed 0 failed; see {tmp_path / 'runs' / 'tiny-seed0.log'}"
    assert "unknown label strategy 'magic'" in (tmp_path / "runs" / "tiny-seed0.log").read_text()


def test_step_commands(tmp_path):
    from auglabel.reproduce.papers import paper_scale_overlay
    from auglabel.reproduce.runner import Runner

    settings = _settings(tmp_path, scale="paper", overrides=["train.device=cpu"], threads=2)
    job = plan_jobs(PAPERS["augmix"], PAPERS["augmix"].groups, settings)[0]
    runner = Runner(settings, print)
    train = runner.command(job, "train")
    at = train.index("train")
    assert train[at + 1:] == [str(job.config), "--config", str(paper_scale_overlay()), "--run_dir", str(job.run),
                              "--overwrite", "--train.seed", "0", "--train.threads", "2", "--train.device", "cpu"]
    assert runner.command(job, "train", resume=True)[at + 1:at + 4] == ["--run_dir", str(job.run), "--resume"]
    job.run.mkdir(parents=True)
    (job.run / "config.yaml").write_text(yaml.safe_dump({"train": {"device": "cuda:1"}}))
    corruptions = runner.command(job, "corruptions")
    assert corruptions[at:] == ["evaluate", str(job.run), "--suite", "corruptions", "--subsample", "50",
                                "--corruptions", ",".join(CORRUPTIONS), "--threads", "2", "--device", "cuda:1"]
    assert runner.command(job, "perturbations")[at + 3:at + 6] == ["perturbations", "--subsample", "300"]


def test_scales_are_the_overlay_files(tmp_path):
    from auglabel.reproduce.papers import scale_overlay, scales, testbed_dir
    from auglabel.reproduce.runner import Runner

    assert scales() == ["small", "paper", "paper_wrn"]
    assert scale_overlay("small") is None and scale_overlay("paper_wrn") == testbed_dir() / "scale" / "paper_wrn.yaml"
    settings = _settings(tmp_path, scale="paper_wrn")
    job = plan_jobs(PAPERS["autolabel"], PAPERS["autolabel"].groups, settings)[0]
    train = Runner(settings, print).command(job, "train")
    assert train[train.index("--config") + 1] == str(testbed_dir() / "scale" / "paper_wrn.yaml")


def test_variants_train_the_base_config_with_their_overrides(tmp_path):
    from auglabel.errors import ConfigError
    from auglabel.reproduce.runner import Runner

    paper = PAPERS["autodo"]
    assert [g.title for g in paper.groups] == ["IR-NR 1-0", "IR-NR 10-0.1", "IR-NR 100-0.3"]
    assert paper.config("autodo_aws__ir10_nr0.1") == paper.config("autodo_aws")
    assert paper.overrides("autodo_aws__ir10_nr0.1") == ("data.imbalance_ratio=10", "data.noise_ratio=0.1")
    assert paper.overrides("autodo_aws") == ()
    with pytest.raises(ConfigError, match="unknown variant 'ir2'"):
        paper.overrides("autodo_aws__ir2")
    settings = _settings(tmp_path, overrides=["train.epochs=2"])
    jobs = plan_jobs(paper, paper.select(["IR-NR 100-0.3"]), settings)
    assert len(jobs) == 6 and {job.run.name for job in jobs} >= {"autodo_baseline__ir100_nr0.3-seed0"}
    runner = Runner(settings, print)
    train = runner.command(jobs[0], "train")
    # the variant's overrides, then the user's (which win)
    assert train[-6:] == ["--data.imbalance_ratio", "100", "--data.noise_ratio", "0.3", "--train.epochs", "2"]
    assert train.index("--data.imbalance_ratio") < train.index("--train.epochs")
    assert "--data.imbalance_ratio" not in runner.command(jobs[0], "train", resume=True)
    with pytest.raises(ConfigError, match="unknown column set"):
        Group("g", "", (("onehot", "x"),), columns=("nope",))


def test_distortion_and_autodo_columns(tmp_path):
    from auglabel.reproduce.pipeline import final_log_row
    from auglabel.reproduce.tables import rare_class_accuracy

    assert rare_class_accuracy([1.0, 0.8, 0.5, 0.3]) == pytest.approx(0.4)  # classes 2 and 3 of K = 4
    assert rare_class_accuracy(None) is None and rare_class_accuracy([0.5, None]) is None
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("epoch,autodo_weight_auroc,note\n1,0.5,x\n2,0.75,y\n")
    assert final_log_row(run) == {"epoch": 2.0, "autodo_weight_auroc": 0.75}
    assert final_log_row(tmp_path) == {}
    group = PAPERS["autodo"].groups[1]
    seeds = [dict(_fake_metrics(s), per_class_accuracy=[0.9] * 5 + [0.4 + 0.1 * s] * 5,
                  final_log={"autodo_weight_auroc": 0.6 + 0.1 * s}) for s in (0, 1)]
    runs = {group.stems[4]: dict(enumerate(seeds))}
    add_derived(runs, [group])
    table = group_table(group, {stem: list(per_seed.values()) for stem, per_seed in runs.items()})
    header, _, *rows = table.splitlines()
    cells = dict(zip([h.strip() for h in header.split("|")], [c.strip() for c in rows[4].split("|")]))
    assert cells["error %"] == "19.50 ± 0.71" and cells["rare-class Acc %"] == "45.00 ± 7.07"
    assert cells["weight AUROC clean vs flipped %"] == "65.00 ± 7.07" and cells["weight, flipped"] == "—"


def test_winning_scores_by_hand():
    from auglabel.reproduce.confidence import winning_scores

    logits = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))], [2.0, 2.0]])
    # softmax(0, ln 3) = (1/4, 3/4); at T = 1/2 the logits double: (1/10, 9/10); ties stay at 1/2
    assert winning_scores(logits).tolist() == pytest.approx([0.75, 0.5])
    assert winning_scores(logits, 0.5).tolist() == pytest.approx([0.9, 0.5])
