import os

import pytest
import torch

# One intra-op thread: small test workloads gain nothing from more, and oversubscribed OpenMP
# threads slow down badly when the 2 cores are shared.
torch.set_num_threads(int(os.environ.get("AUGLABEL_TEST_THREADS", "1")))

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


@pytest.fixture
def digits_config(tmp_path):
    """A tiny, fast experiment on scikit-learn's digits (8x8) that trains in seconds."""
    from auglabel.engine.config import ComponentConfig, DataConfig, ExperimentConfig, OptimConfig, TrainConfig

    def make(**train_overrides):
        train = dict(epochs=2, batch_size=64, eval_batch_size=256, seed=0, device="cpu")
        train.update(train_overrides)
        return ExperimentConfig(
            data=DataConfig(name="digits", val_size=0.2),
            model=ComponentConfig("small_cnn", {}),
            optim=OptimConfig(lr=0.05, warmup_epochs=0.5),
            train=TrainConfig(**train),
            run_dir=str(tmp_path / "run"),
        )

    return make
