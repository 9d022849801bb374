"""Streamed image folders (data/streaming.py, data/stream_loader.py): listing, decoding, order, shards, errors."""
import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from auglabel.batch import Batch
from auglabel.cli import main
from auglabel.data import StreamingImageFolder, StreamingLoader, load_dataset
from auglabel.data.loader import DeviceLoader
from auglabel.errors import ConfigError, DataError

CLASSES = ["bird", "cat", "dog"]
SIZES = [(32, 32), (40, 28), (24, 36), (64, 48), (17, 50)]


def write_folder(root, per_class=20, test_per_class=5, seed=0):
    """root/{train,test}/<class>/ with JPEGs and PNGs of mixed sizes; class c is brighter in channel c."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                w, h = SIZES[i % len(SIZES)]
                pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
                pixels[..., label] += 150
                suffix = ".png" if i % 2 else ".jpg"
                Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("stream"))


@pytest.fixture(scope="module")
def train_set(folder):
    return load_dataset("image_folder_stream", "train", root=folder, image_size=16)


def loader(dataset, *, train=True, batch_size=8, seed=0, rank=0, world_size=1, workers=0, indices=None):
    indices = torch.arange(len(dataset)) if indices is None else indices
    return StreamingLoader(dataset, indices, dataset.num_classes, batch_size, train=train, seed=seed,
                           rank=rank, world_size=world_size, num_workers=workers)


def rows(batches):
    return [b.index.tolist() for b in batches]


def test_listing_labels_and_classes(train_set):
    assert isinstance(train_set, StreamingImageFolder)
    assert train_set.classes == CLASSES and len(train_set) == 60
    assert train_set.labels.tolist() == [0] * 20 + [1] * 20 + [2] * 20
    assert train_set.image_shape == (3, 16, 16)
    names = [train_set.path(i).name for i in range(20)]
    assert names == sorted(names)


def test_fixed_size_uint8_and_labels_follow_content(train_set):
    for train in (True, False):
        batches = list(loader(train_set, train=train, batch_size=12))
        for batch in batches:
            assert isinstance(batch, Batch)
            assert batch.inputs.shape[1:] == (3, 16, 16) and batch.inputs.dtype == torch.float32
            assert 0 <= batch.inputs.min() and batch.inputs.max() <= 1
            assert torch.equal(batch.labels, train_set.labels[batch.index])
            # the brightest channel is the class (the fixture's images say so)
            assert torch.equal(batch.inputs.mean((2, 3)).argmax(1), batch.labels)
    raw = train_set.decode(3, train=True, seed=0, epoch=0)
    assert raw.dtype == torch.uint8 and raw.shape == (3, 16, 16)


def test_eval_decode_is_resize_and_centre_crop(train_set):
    image = Image.open(train_set.path(3)).convert("RGB")  # 64x48
    small = np.asarray(image.resize((21, 16), Image.BILINEAR))[:, 2:18]
    decoded = train_set.decode(3, train=False).permute(1, 2, 0).numpy()
    assert decoded.shape == (16, 16, 3)
    assert np.abs(decoded.astype(int) - small.astype(int)).mean() < 12


def test_deterministic_for_a_seed_and_reshuffled_per_epoch(train_set):
    a, b = loader(train_set, seed=3), loader(train_set, seed=3)
    first, again = list(a), list(b)
    assert rows(first) == rows(again)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(first, again))
    a.set_epoch(1)
    second = list(a)
    assert rows(second) != rows(first)
    assert not torch.equal(first[0].inputs, loader(train_set, seed=4).__iter__().__next__().inputs)


def test_same_order_as_the_in_memory_loader(train_set):
    stream = loader(train_set, seed=5, batch_size=8)
    memory = DeviceLoader(torch.zeros(60, 3, 2, 2, dtype=torch.uint8), train_set.labels, torch.arange(60), 3, 8,
                          train=True, seed=5)
    for epoch in (0, 2):
        stream.set_epoch(epoch)
        memory.set_epoch(epoch)
        assert rows(stream) == rows(memory)
        assert len(stream) == len(memory) == 7


def test_resume_with_iter_from_equals_uninterrupted(train_set):
    full = loader(train_set, seed=1, workers=2)
    full.set_epoch(4)
    whole = list(full)
    resumed = loader(train_set, seed=1, workers=2)
    resumed.set_epoch(4)
    tail = list(resumed.iter_from(3))
    assert rows(tail) == rows(whole[3:])
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(tail, whole[3:]))
    # worker decoding gives the same pixels as decoding in this process
    inline = loader(train_set, seed=1, workers=0)
    inline.set_epoch(4)
    assert all(torch.equal(x.inputs, y.inputs) for x, y in zip(list(inline), whole))
    full.close()
    resumed.close()


def test_two_rank_training_shards_disjoint_complete_equal(train_set):
    ranks = [loader(train_set, seed=2, batch_size=8, rank=r, world_size=2) for r in range(2)]
    single = loader(train_set, seed=2, batch_size=8)
    for r in ranks:
        r.set_epoch(1)
    single.set_epoch(1)
    per_rank = [rows(r) for r in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(single) == 7
    for step, whole in enumerate(rows(single)):
        a, b = per_rank[0][step], per_rank[1][step]
        assert len(a) == len(b) == 4 and not set(a) & set(b)
        assert a + b == whole
    seen = [i for shard in per_rank for batch in shard for i in batch]
    assert len(seen) == len(set(seen)) == 56


def test_eval_shards_exact(train_set):
    indices = torch.arange(0, 60, 2)[:29]  # 29 rows: not a multiple of 2 ranks nor of the batch size
    shards = [rows(loader(train_set, train=False, batch_size=4, rank=r, world_size=2, indices=indices))
              for r in range(2)]
    seen = sorted(i for shard in shards for batch in shard for i in batch)
    assert seen == sorted(indices.tolist())


def test_missing_and_empty_folders_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="missing image folder") as missing:
        load_dataset("image_folder_stream", "train", root=tmp_path / "nope", image_size=8)
    (tmp_path / "empty" / "train" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no .png/.jpg images") as empty:
        load_dataset("image_folder_stream", "train", root=tmp_path / "empty", image_size=8)
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("image_folder_stream", "train", root=tmp_path / "empty")
    for error in (missing, empty):
        assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_is_a_one_line_error(tmp_path, workers):
    root = write_folder(tmp_path / "data", per_class=4, test_per_class=1)
    (root / "train" / "cat" / "002.jpg").write_bytes(b"not a jpeg at all")
    dataset = load_dataset("image_folder_stream", "train", root=root, image_size=8)
    with pytest.raises(DataError) as error:
        list(loader(dataset, train=False, batch_size=4, workers=workers))
    message = str(error.value)
    assert "unreadable image" in message and "002.jpg" in message and len(message.splitlines()) == 1


def test_image_size_refused_for_in_memory_datasets(tmp_path):
    with pytest.raises(ConfigError, match="streamed"):
        load_dataset("digits", "train", image_size=8)


def test_train_end_to_end_on_a_streamed_folder(folder, tmp_path, capsys):
    config = {"data": {"name": "image_folder_stream", "root": str(folder), "image_size": 16, "val_size": 12,
                       "num_workers": 2},
              "model": {"name": "small_cnn"}, "augment": {"name": "standard"},
              "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "device": "cpu"}}
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(config))
    run = tmp_path / "run"
    assert main(["train", str(path), "--run_dir", str(run)]) == 0, capsys.readouterr().err
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["name"] == "image_folder_stream" and saved["data"]["image_size"] == 16
    metrics = json.loads((run / "metrics.json").read_text())
    test_images = sum(1 for _ in (folder / "test").rglob("*.*"))
    assert metrics["count"] == test_images and 0.0 <= metrics["accuracy"] <= 1.0  # the whole streamed test split
    assert metrics["epochs"] == 1 and (run / "checkpoint.pt").is_file()
