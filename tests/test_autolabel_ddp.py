"""AutoLabel under DDP: two CPU processes (gloo) with different validation shards end every epoch
with identical bucket values, equal to the update from the statistics of both shards summed."""
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.labels import LABEL_STRATEGIES

NUM_BUCKETS, EPOCHS = 4, 2


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _shard(rank: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(10 + rank)
    images = torch.rand(90 + 30 * rank, 1, 4, 4, generator=generator)  # uneven shards
    labels = torch.randint(0, 3, (len(images),), generator=generator)
    return [Batch(images[i:i + 40], labels[i:i + 40], torch.arange(i, min(i + 40, len(images))), 3)
            for i in range(0, len(images), 40)]


def _strategy():
    augment = AUGMENTATIONS.build("gaussian_noise", sigma_max=0.5)
    strategy = LABEL_STRATEGIES.build("autolabel", num_buckets=NUM_BUCKETS, alpha=1.0, num_bins=5)
    strategy.bind(augment)
    return strategy, augment


def _context(epoch, model, augment, strategy, rank, run_dir):
    return SimpleNamespace(epoch=epoch, model=model, augment=augment, labels=strategy, val_loader=_shard(rank),
                           generator=torch.Generator().manual_seed(100 + rank), dist=SimpleNamespace(is_main=rank == 0),
                           run_dir=run_dir, is_last_epoch=False)


def _worker(rank: int, store_path: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, 2), rank=rank, world_size=2)
    try:
        strategy, augment = _strategy()
        model = _model().eval()
        for epoch in range(1, EPOCHS + 1):
            strategy.on_epoch_end(_context(epoch, model, augment, strategy, rank, Path(out_dir)))
        torch.save(torch.tensor(strategy.history), f"{out_dir}/history{rank}.pt")
    finally:
        dist.destroy_process_group()


def _expected_history():
    """The same epochs in one process: each rank's statistics (same generators) summed by hand."""
    strategy, augment = _strategy()
    model = _model().eval()
    history = []
    for _ in range(EPOCHS):
        stats = sum(strategy.bucket_statistics(model, augment, _shard(rank),
                                               torch.Generator().manual_seed(100 + rank + 7919)) for rank in (0, 1))
        strategy.update_from_statistics(stats)
        history.append(strategy.values.clone())
    return torch.stack(history)


def test_two_ranks_hold_identical_values_equal_to_the_pooled_update(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"history{r}.pt") for r in (0, 1))
    assert torch.equal(rank0, rank1)
    expected = _expected_history()
    torch.testing.assert_close(rank0, expected.to(rank0.dtype))
    # the reduction mattered: rank 0's shard alone gives other values
    alone, augment = _strategy()
    alone.update_from_statistics(alone.bucket_statistics(_model().eval(), augment, _shard(0),
                                                         torch.Generator().manual_seed(100 + 7919)))
    assert not torch.allclose(alone.values, expected[0])
    assert (tmp_path / "autolabel.csv").is_file()  # written by rank 0 only, once per epoch
