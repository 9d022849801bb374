"""WebDataset-style tar shards (data/tar_shards.py): the index, samples equal to the streamed image folder of
the same files (pixels, random crops, labels, classes, training), decoding workers and one-line errors."""
import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from auglabel import Trainer
from auglabel.data import StreamingImageFolder, StreamingLoader, TarShards, dataset_names, load_dataset
from auglabel.engine.config import ExperimentConfig
from auglabel.errors import ConfigError, DataError
from state_helper import state_of

CLASSES = ["bird", "cat", "dog"]
SIZES = [(32, 32), (40, 28), (24, 36), (64, 48), (17, 50)]


def write_folder(root, per_class=7, test_per_class=3, seed=0):
    """root/{train,test}/<class>/ with JPEGs and PNGs of mixed sizes; class c is brighter in channel c."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                w, h = SIZES[i % len(SIZES)]
                pixels = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
                pixels[..., label] += 150
                Image.fromarray(pixels).save(root / split / name / f"{i:03d}{'.png' if i % 2 else '.jpg'}")
    return root


def tar_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_tar_shards(samples, out_dir, split, shard_size, *, extra=True):
    """``samples`` ((key, image suffix, image bytes, label) in order) as ``out_dir/<split>-NNNNNN.tar`` shards of
    ``shard_size`` samples (WebDataset's layout); with ``extra``, every other sample has its class member first
    and a .json member the reader ignores."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, start in enumerate(range(0, len(samples), shard_size)):
        path = out_dir / f"{split}-{number:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i, (key, suffix, data, label) in enumerate(samples[start:start + shard_size]):
                members = [(f"{key}{suffix}", data), (f"{key}.cls", str(label).encode())]
                if extra and i % 2:
                    members = [members[1], (f"{key}.json", b'{"note": 1}'), members[0]]
                for name, payload in members:
                    tar_member(tar, name, payload)
        paths.append(path)
    return paths


def shards_of_folder(folder, out_dir, shard_size, *, classes_txt=True):
    """The files of the image folder ``folder`` (in the streamed folder's row order: classes sorted, files
    sorted) as tar shards with keys ``<class>/<stem>``, so row i of both is the same file."""
    for split in ("train", "test"):
        listing = load_dataset("image_folder_stream", split, root=folder, image_size=8)
        samples = []
        for row in range(len(listing)):
            path = listing.path(row)
            samples.append((f"{path.parent.name}/{path.stem}", path.suffix, path.read_bytes(),
                            int(listing.labels[row])))
        write_tar_shards(samples, out_dir, split, shard_size)
    if classes_txt:
        (out_dir / "classes.txt").write_text("".join(f"{name}\n" for name in listing.classes))
    return out_dir


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    return shards_of_folder(folder, tmp_path_factory.mktemp("shards"), shard_size=8)  # 21 train samples: 3 shards


def pair(folder, shards, split="train", **options):
    options = {"image_size": 16, **options}
    return (load_dataset("image_folder_stream", split, root=folder, **options),
            load_dataset("tar_shards", split, root=shards, **options))


def test_index_labels_classes_and_row_order(folder, shards):
    assert "tar_shards" in dataset_names()
    for split, count in (("train", 21), ("test", 9)):
        images, tars = pair(folder, shards, split)
        assert isinstance(tars, TarShards) and isinstance(tars, StreamingImageFolder)
        assert len(tars) == len(images) == count and tars.name == "tar_shards"
        assert torch.equal(tars.labels, images.labels) and tars.classes == images.classes == CLASSES
        assert tars.image_shape == images.image_shape == (3, 16, 16)
        members = [m.decode() for m in tars.files["member"]]
        assert members == [images.files[row].decode() for row in range(count)]  # "<class>/<file>"
    assert [p.name for p in tars.shards] == ["test-000000.tar", "test-000001.tar"]
    train = load_dataset("tar_shards", "train", root=shards, image_size=16)
    assert len(train.shards) == 3 and train.files["shard"].tolist() == [0] * 8 + [1] * 8 + [2] * 5
    assert "shards=3" in repr(train) and train.source(9).endswith("train-000001.tar:cat/002.jpg")


def test_classes_without_classes_txt_span_both_splits(tmp_path):
    pixels = np.full((10, 12, 3), 90, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = buffer.getvalue()
    write_tar_shards([("a", ".png", data, 0), ("b", ".png", data, 2)], tmp_path, "train", 5)
    write_tar_shards([("c", ".png", data, 4)], tmp_path, "test", 5)
    train = load_dataset("tar_shards", "train", root=tmp_path, image_size=8)
    assert train.classes == ["0", "1", "2", "3", "4"] and train.labels.tolist() == [0, 2]
    assert load_dataset("tar_shards", "test", root=tmp_path, image_size=8).num_classes == 5
    (tmp_path / "classes.txt").write_text("zero\none\ntwo\nthree\nfour\nfive\n\n")
    assert load_dataset("tar_shards", "train", root=tmp_path, image_size=8).classes == \
        ["zero", "one", "two", "three", "four", "five"]
    (tmp_path / "classes.txt").write_text("zero\none\n")
    with pytest.raises(DataError, match="class index 4 .* names 2 classes") as error:
        load_dataset("tar_shards", "train", root=tmp_path, image_size=8)
    assert len(str(error.value).splitlines()) == 1


@pytest.mark.parametrize("crop_scale", [1.0, 0.08])
def test_decode_equals_the_streamed_folder(folder, shards, crop_scale):
    images, tars = pair(folder, shards, crop_scale=crop_scale)
    for row in range(len(tars)):
        assert torch.equal(tars.decode(row, train=False), images.decode(row, train=False))
        for seed, epoch in ((0, 0), (3, 2)):
            assert torch.equal(tars.decode(row, train=True, seed=seed, epoch=epoch),
                               images.decode(row, train=True, seed=seed, epoch=epoch))
    if crop_scale < 1:  # random crops are drawn
        assert not torch.equal(tars.decode(3, train=True), tars.decode(3, train=False))
    rows = [5, 2, 17]
    sub_images, sub_tars = images.subset(rows), tars.subset(rows)
    assert isinstance(sub_tars, TarShards) and torch.equal(sub_tars.labels, sub_images.labels)
    for row in range(3):
        assert torch.equal(sub_tars.decode(row, train=True, seed=1), sub_images.decode(row, train=True, seed=1))
    noisy = tars.with_labels(torch.zeros(len(tars), dtype=torch.int64))
    assert isinstance(noisy, TarShards) and noisy.labels.sum() == 0
    assert torch.equal(noisy.decode(4, train=False), tars.decode(4, train=False))
    assert tars.mean_std() == images.mean_std()
    copied = pickle.loads(pickle.dumps(tars))  # spawned workers get the dataset pickled: no open files in it
    assert torch.equal(copied.decode(7, train=True, seed=2), tars.decode(7, train=True, seed=2))


def batches(loader):
    return [(b.index.tolist(), b.labels.tolist(), b.inputs) for b in loader]


def same(a, b):
    return len(a) == len(b) and all(x[0] == y[0] and x[1] == y[1] and torch.equal(x[2], y[2]) for x, y in zip(a, b))


def test_loader_workers_give_the_same_batches(folder, shards):
    images, tars = pair(folder, shards)
    tars.decode(0, train=False)  # this process holds a shard open before the workers fork
    indices = torch.arange(len(tars))
    for train in (True, False):
        made = {}
        for kind, dataset, workers in (("inline", tars, 0), ("workers", tars, 2), ("folder", images, 0)):
            loader = StreamingLoader(dataset, indices, 3, 4, train=train, seed=7, num_workers=workers)
            loader.set_epoch(1)
            made[kind] = batches(loader)
            loader.close()
        assert same(made["inline"], made["workers"]) and same(made["inline"], made["folder"])
        assert len(made["inline"]) == (5 if train else 6)


# --- training from the config ------------------------------------------------------------------------------


def digits_folder(root, per_class=12, test_per_class=3):
    """sklearn's 8x8 digits as grey PNGs: root/{train,test}/<digit>/NNN.png."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    for label in range(10):
        rows = np.flatnonzero(digits.target == label)[:per_class + test_per_class]
        for i, row in enumerate(rows):
            split = "train" if i < per_class else "test"
            (root / split / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[row]).save(root / split / str(label) / f"{i:03d}.png")
    return root


def test_training_on_shards_equals_training_on_the_folder(tmp_path):
    folder = digits_folder(tmp_path / "digits")
    shards = shards_of_folder(folder, tmp_path / "shards", shard_size=50, classes_txt=False)  # classes "0".."9"
    out = {}
    for name, root, workers in (("image_folder_stream", folder, 0), ("tar_shards", shards, 2)):
        raw = {"data": {"name": name, "root": str(root), "image_size": 8, "crop_scale": 0.5, "val_size": 20,
                        "num_workers": workers},
               "model": {"name": "small_cnn"}, "augment": {"name": "standard"},
               "train": {"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "device": "cpu", "threads": 1,
                         "seed": 0}}
        trainer = Trainer(ExperimentConfig.from_dict(raw), tmp_path / name, progress=False)
        metrics = trainer.fit()
        out[name] = (state_of(trainer), metrics)
    (a, metrics_a), (b, metrics_b) = out["image_folder_stream"], out["tar_shards"]
    assert a.keys() == b.keys()
    different = [key for key in a if not (torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor)
                                          else a[key] == b[key])]
    assert not different, different
    assert metrics_b["count"] == 30 and metrics_b["dataset"] == "tar_shards"
    for key in ("accuracy", "nll", "brier", "ece", "per_class_accuracy", "val"):
        assert metrics_a[key] == metrics_b[key], key


# --- errors ------------------------------------------------------------------------------------------------


def png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((9, 9), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def one_line(excinfo, *parts):
    message = str(excinfo.value)
    assert len(message.splitlines()) == 1, message
    for part in parts:
        assert part in message, message
    return message


def test_sample_without_class_or_image_is_a_one_line_error(tmp_path):
    data = png_bytes()
    write_tar_shards([("a/0", ".png", data, 0), ("a/1", ".png", data, 1)], tmp_path / "ok", "train", 5)
    assert load_dataset("tar_shards", "train", root=tmp_path / "ok", image_size=4).image_shape == (1, 4, 4)
    (tmp_path / "no_cls").mkdir()
    with tarfile.open(tmp_path / "no_cls" / "train-000000.tar", "w") as tar:
        tar_member(tar, "a/0.png", data)
        tar_member(tar, "a/0.cls", b"0")
        tar_member(tar, "a/1.png", data)  # no a/1.cls
        tar_member(tar, "a/2.png", data)
        tar_member(tar, "a/2.cls", b"1")
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "no_cls", image_size=4)
    one_line(error, "train-000000.tar", "'a/1'", "no class")
    (tmp_path / "no_image").mkdir()
    with tarfile.open(tmp_path / "no_image" / "train-000000.tar", "w") as tar:
        tar_member(tar, "x.y/0.seg.png", data)  # extension "seg.png": not the image; the key is "x.y/0"
        tar_member(tar, "x.y/0.cls", b"3")
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "no_image", image_size=4)
    one_line(error, "train-000000.tar", "'x.y/0'", "no image")
    (tmp_path / "bad_cls").mkdir()
    with tarfile.open(tmp_path / "bad_cls" / "train-000000.tar", "w") as tar:
        tar_member(tar, "k.png", data)
        tar_member(tar, "k.cls", b"-1")
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "bad_cls", image_size=4)
    one_line(error, "train-000000.tar", "'k'", "not an integer class index")


def test_bad_shards_are_one_line_errors(tmp_path):
    data = png_bytes()
    good = write_tar_shards([("a", ".png", data, 0)], tmp_path / "gz", "train", 5)[0]
    gz = tmp_path / "gz" / "train-000001.tar.gz"
    gz.write_bytes(gzip.compress(good.read_bytes()))
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "gz", image_size=4)
    one_line(error, "compressed tar shard", "train-000001.tar.gz", "uncompressed")
    gz.unlink()
    good.write_bytes(gzip.compress(good.read_bytes()))  # gzip data named .tar
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "gz", image_size=4)
    one_line(error, "compressed tar shard", "train-000000.tar", "gzip")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "train-000000.tar").write_bytes(b"this is not a tar file at all " * 40)
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "garbage", image_size=4)
    one_line(error, "unreadable tar shard", "train-000000.tar")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train-000000.tar").write_bytes(b"")
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "empty", image_size=4)
    one_line(error, "train-000000.tar")
    truncated = write_tar_shards([("a", ".png", data, 0), ("b", ".png", data * 20, 0)], tmp_path / "cut", "train",
                                 5, extra=False)[0]
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[:1024 + len(data) + 2048])  # b.png's header, a part of its data
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "cut", image_size=4)
    one_line(error, "train-000000.tar")
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "none", image_size=4)
    one_line(error, "missing shard folder")
    (tmp_path / "other").mkdir()
    write_tar_shards([("a", ".png", data, 0)], tmp_path / "other", "test", 5)
    with pytest.raises(DataError) as error:
        load_dataset("tar_shards", "train", root=tmp_path / "other", image_size=4)
    one_line(error, "no tar shards", "train-*.tar")
    with pytest.raises(ConfigError, match="needs a root"):
        load_dataset("tar_shards", "train", image_size=4)
    with pytest.raises(ConfigError, match="'tar_shards' needs data.image_size"):
        load_dataset("tar_shards", "test", root=tmp_path / "other")


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_image_in_a_shard_is_a_one_line_error(tmp_path, workers):
    data = png_bytes()
    samples = [(f"s{i}", ".png", data, i % 2) for i in range(6)]
    samples[3] = ("s3", ".jpg", b"not a jpeg at all", 1)
    write_tar_shards(samples, tmp_path, "train", 4)
    dataset = load_dataset("tar_shards", "train", root=tmp_path, image_size=4)
    loader = StreamingLoader(dataset, torch.arange(6), 2, 3, train=False, num_workers=workers)
    with pytest.raises(DataError) as error:
        list(loader)
    loader.close()
    one_line(error, "unreadable image", "train-000000.tar:s3.jpg")
