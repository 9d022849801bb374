"""AutoDO under DDP: two CPU processes (gloo) train the DDP-wrapped TrainingStep on their shards and run hyper
passes with their own generators; the hypergradients are all-reduced by hand, so the per-sample tables (and the
hyper optimiser's state) end identical on both ranks, and, without augmentation randomness, equal to one
process running the same global batches."""
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from auglabel.augment import AUGMENTATIONS
from auglabel.data.loader import DeviceLoader
from auglabel.engine.step import ComponentSpec, TrainingStep
from auglabel.labels import LABEL_STRATEGIES
from auglabel.models import Classifier

K, N, GLOBAL_BATCH = 3, 64, 16


def _data():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N, 1, 6, 6), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, K, (N,), generator=g)
    return images, labels, torch.arange(48), torch.arange(48, N)


def _step(augment: str) -> TrainingStep:
    torch.manual_seed(0)
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(36, 5), nn.Tanh()), 5, K, in_channels=1)
    augment_module = AUGMENTATIONS.build(augment)
    labels = LABEL_STRATEGIES.build("autodo", hyper_start=0, plots=False)
    labels.bind(augment_module)
    step = TrainingStep(model, augment_module, labels)
    step.setup(ComponentSpec(num_classes=K, feature_dim=5, input_shape=(1, 6, 6), dataset_size=N, train_size=48,
                             labels=_data()[1]))
    return step


def _run(step: TrainingStep, ddp: nn.Module, rank: int, world: int) -> None:
    images, labels, train_idx, val_idx = _data()
    train = DeviceLoader(images, labels, train_idx, K, GLOBAL_BATCH, train=True, seed=1, rank=rank, world_size=world)
    val = DeviceLoader(images, labels, val_idx, K, 100, train=False, rank=rank, world_size=world)
    optimizer = torch.optim.SGD(step.param_groups(), lr=0.1)
    generator = torch.Generator().manual_seed(7 + rank)
    for epoch in (1, 2):
        train.set_epoch(epoch)
        for batch in train:
            loss, _, _ = ddp(batch, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        context = SimpleNamespace(epoch=epoch, num_epochs=10, model=step.model, augment=step.augment, labels=step.labels,
                                  train_loader=train, val_loader=val, generator=generator, splits=None,
                                  dist=SimpleNamespace(is_main=rank == 0), is_last_epoch=False)
        step.labels.on_epoch_end(context)


def _worker(rank: int, store_path: str, out_dir: str, augment: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        step = _step(augment)
        _run(step, DistributedDataParallel(step), rank, 2)
        state = {k: v.detach().clone() for k, v in step.state_dict().items() if not k.endswith("_extra_state")}
        square = step.labels.optimizer.state_dict()["square_avg"]
        torch.save({"state": state, "square": square}, f"{out_dir}/{augment}{rank}.pt")
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path, augment):
    mp.spawn(_worker, args=(str(tmp_path / f"store_{augment}"), str(tmp_path), augment), nprocs=2, join=True)
    return [torch.load(tmp_path / f"{augment}{r}.pt") for r in (0, 1)]


def test_tables_are_identical_on_both_ranks_and_equal_one_process_on_the_global_batch(tmp_path):
    rank0, rank1 = _spawn(tmp_path, "none")
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    assert all(torch.equal(a, b) for a, b in zip(rank0["square"], rank1["square"]))
    single = _step("none")
    _run(single, single, 0, 1)
    for key in ("labels.weights.values", "labels.soft.values", "model.head.weight"):
        torch.testing.assert_close(rank0["state"][key], single.state_dict()[key], atol=1e-4, rtol=1e-4, msg=key)
    start = _step("none").state_dict()
    moved = (rank0["state"]["labels.weights.values"] - start["labels.weights.values"]).abs()
    assert moved[:48].gt(0).float().mean() > 0.9 and moved[48:].eq(0).all()  # training rows of BOTH ranks moved


def test_learned_augmentation_tables_stay_identical_with_per_rank_randomness(tmp_path):
    rank0, rank1 = _spawn(tmp_path, "autodo")
    for key in ("augment.probability.values", "augment.magnitude.values", "labels.soft.values"):
        assert torch.equal(rank0["state"][key], rank1["state"][key]), key
    start = _step("autodo").state_dict()["augment.magnitude.values"]
    assert not torch.equal(rank0["state"]["augment.magnitude.values"], start)
