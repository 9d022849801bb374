"""The same `auglabel train` command under torchrun (2 CPU processes, gloo) matches one process.

Each of the 2 processes takes half of every global batch and DDP averages the gradients, so with a
BatchNorm-free model the trained weights equal a single process's up to float summation order;
evaluation shards are exact, so the test metrics count every test image once.
"""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from auglabel.engine.checkpoint import load_checkpoint

CONFIG = {
    "data": {"name": "digits", "val_size": 0.2},
    "model": {"name": "small_cnn", "params": {"norm": "none"}},
    "optim": {"lr": 0.05, "warmup_epochs": 0.5},
    "train": {"epochs": 2, "batch_size": 64, "eval_batch_size": 100, "seed": 3, "device": "cpu", "threads": 1},
}


def _run(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result



def test_two_process_ddp_matches_single_process(tmp_path):
    config = tmp_path / "digits.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    single, multi = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, "-m", "auglabel.cli", "train", str(config), "--run_dir", str(single)])
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
          "-m", "auglabel.cli", "train", str(config), "--run_dir", str(multi)])

    a = load_checkpoint(single / "checkpoint.pt")["step"]
    b = load_checkpoint(multi / "checkpoint.pt")["step"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=2e-5, rtol=1e-4), key

    ma = json.loads((single / "metrics.json").read_text())
    mb = json.loads((multi / "metrics.json").read_text())
    from auglabel.data import load_dataset

    assert mb["count"] == ma["count"] == len(load_dataset("digits", "test"))  # each test image once
    for key in ("accuracy", "ece", "rms_ce", "brier", "nll"):
        assert mb[key] == pytest.approx(ma[key], abs=1e-4), key
    assert mb["val"]["count"] == ma["val"]["count"]
