"""PLS under DDP: two CPU processes (gloo) that train the DDP-wrapped TrainingStep on different shards,
pair with different generators and even start from different W_t initialisations end with one identical
W_t (DDP broadcasts it at construction and averages its gradients: it lives in the step's label strategy)."""
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.engine.step import ComponentSpec, TrainingStep
from auglabel.labels import LABEL_STRATEGIES
from auglabel.models import Classifier

K, STEPS = 3, 4
SPEC = ComponentSpec(num_classes=K, feature_dim=6, input_shape=(1, 4, 4), dataset_size=64, train_size=64)


def _step(seed: int) -> TrainingStep:
    torch.manual_seed(seed)
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU()), 6, K, in_channels=1)
    step = TrainingStep(model, AUGMENTATIONS.build("none"), LABEL_STRATEGIES.build("pls"))
    step.setup(SPEC)
    return step


def _shard(rank: int, step: int) -> Batch:
    generator = torch.Generator().manual_seed(1000 * rank + step)
    images = torch.rand(8, 1, 4, 4, generator=generator)
    return Batch(images, torch.randint(0, K, (8,), generator=generator), torch.arange(8) + 8 * rank, K)


def _train(step: nn.Module, rank: int) -> None:
    optimizer = torch.optim.SGD(step.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(7 + rank)  # per-rank partners, as in the trainer
    for i in range(STEPS):
        loss, _, _ = step(_shard(rank, i), generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _worker(rank: int, store_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        step = _step(seed=rank)  # different initialisations on purpose
        _train(DistributedDataParallel(step), rank)
        torch.save({k: v.clone() for k, v in step.state_dict().items()}, f"{out_dir}/step{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_every_rank_ends_with_the_same_w_t(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"step{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and "labels.head.weight" in rank0
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    assert int(rank0["step_count"]) == STEPS
    initial = _step(seed=0).state_dict()
    assert not torch.allclose(rank0["labels.head.weight"], initial["labels.head.weight"])  # W_t trained
    # the synchronisation mattered: each rank alone, from rank 0's start, ends elsewhere
    alone = []
    for rank in (0, 1):
        step = _step(seed=0)
        _train(step, rank)
        alone.append(step.labels.head.weight.detach())
    assert not torch.allclose(alone[0], alone[1], atol=1e-4)
    assert not torch.allclose(alone[0], rank0["labels.head.weight"], atol=1e-4)
