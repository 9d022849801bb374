"""Readers and named datasets: tiny files in the real formats, written here and read back."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from auglabel.data import (ImageDataset, dataset_names, load_dataset, read_cifar, read_idx,
                           read_image_folder, read_svhn)
from auglabel.errors import ConfigError, DataError

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
             np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The idx encoding written from the format description, independently of the reader."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype.type], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool) -> Path:
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


# ---------------------------------------------------------------- idx

@pytest.mark.parametrize("dtype", list(IDX_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_every_type(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    out = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array, compress))
    assert out.dtype == np.dtype(dtype) and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, array)
    assert out.flags.writeable


def test_read_idx_big_endian_known_bytes(tmp_path):
    # hand-written file: int16, 1-D of 2 items, values 0x0102 and -2
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    np.testing.assert_array_equal(read_idx(path), [258, -2])


def corrupt_variants(tmp_path: Path) -> dict[str, Path]:
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    variants = {
        "wrong_magic": b"\x08\x03" + good[2:],
        "unknown_type": good[:2] + b"\x07" + good[3:],
        "short_payload": good[:-1],
        "long_payload": good + b"\x00",
        "short_header": good[:9],
        "tiny": good[:3],
        "empty": b"",
        "zero_dims": b"\x00\x00\x08\x00",
        "truncated_gzip": gzip.compress(good)[:-10],
        "garbage_gzip": b"\x1f\x8b" + b"not really gzip data",
    }
    paths = {}
    for name, content in variants.items():
        paths[name] = tmp_path / f"{name}-idx3-ubyte.gz"
        paths[name].write_bytes(content)
    return paths


def test_read_idx_corrupt_files_raise_data_error(tmp_path):
    for name, path in corrupt_variants(tmp_path).items():
        with pytest.raises(DataError, match="corrupt idx file") as info:
            read_idx(path)
        assert str(path) in str(info.value), name


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_idx(tmp_path / "nope")


def write_fashion(folder: Path, images: np.ndarray, labels: np.ndarray, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images, True)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, False)


def test_load_fashion_mnist_from_idx_files(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 5, 6), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1, 2, 8], dtype=np.uint8)
    write_fashion(tmp_path, images, labels, "t10k")
    data = load_dataset("fashion_mnist", "test", root=tmp_path)
    assert data.images.shape == (7, 1, 5, 6) and data.images.dtype == torch.uint8
    assert data.images.is_contiguous()
    np.testing.assert_array_equal(data.images[:, 0].numpy(), images)
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == labels.tolist()
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    assert data.num_classes == 10 and len(data) == 7 and data.name == "fashion_mnist"


def test_idx_files_found_in_torchvision_raw_folder(tmp_path):
    write_fashion(tmp_path / "MNIST" / "raw", np.zeros((2, 3, 3), np.uint8),
                  np.array([4, 5], np.uint8), "train")
    assert load_dataset("mnist", root=tmp_path).labels.tolist() == [4, 5]


def test_idx_pair_mismatches_raise(tmp_path):
    write_fashion(tmp_path / "count", np.zeros((3, 2, 2), np.uint8), np.zeros(2, np.uint8), "train")
    with pytest.raises(DataError, match="expected 3 labels"):
        load_dataset("mnist", root=tmp_path / "count")
    write_fashion(tmp_path / "range", np.zeros((2, 2, 2), np.uint8), np.array([1, 10], np.uint8),
                  "train")
    with pytest.raises(DataError, match="outside 0..9"):
        load_dataset("mnist", root=tmp_path / "range")
    write_fashion(tmp_path / "dims", np.zeros((2, 4), np.uint8), np.zeros(2, np.uint8), "train")
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        load_dataset("mnist", root=tmp_path / "dims")
    with pytest.raises(DataError, match="missing train-images"):
        load_dataset("mnist", root=tmp_path)


# ---------------------------------------------------------------- CIFAR

def dump(path: Path, content: object) -> None:
    path.write_bytes(pickle.dumps(content))


def make_cifar10(parent: Path, per_batch: int = 2) -> tuple[np.ndarray, np.ndarray]:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    all_data, all_labels = [], []
    for name in names:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        dump(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": labels})
        all_data.append(data)
        all_labels += labels
    dump(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return np.concatenate(all_data), np.array(all_labels)


def test_read_cifar10_from_parent_and_from_folder(tmp_path):
    data, labels = make_cifar10(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        train = read_cifar(root, "train", 10)
        assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
        assert train.labels.tolist() == labels[:10].tolist()
        assert train.classes == [f"c{i}" for i in range(10)]
        # the official row layout: 1024 red values, then green, then blue, each row-major
        n, c, h, w = 7, 2, 5, 30
        assert train.images[n, c, h, w].item() == data[n, c * 1024 + h * 32 + w]
        test = read_cifar(root, "test", 10)
        np.testing.assert_array_equal(test.images.reshape(2, -1).numpy(), data[10:])


def test_load_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    dump(folder / "train", {b"data": data, b"fine_labels": [99, 5], b"coarse_labels": [19, 1]})
    dump(folder / "test", {b"data": data[:1], b"fine_labels": [7], b"coarse_labels": [2]})
    dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                           b"coarse_label_names": [f"g{i}".encode() for i in range(20)]})
    train = load_dataset("cifar100", "train", root=tmp_path)
    assert train.labels.tolist() == [99, 5] and train.num_classes == 100
    assert train.classes[99] == "f99" and train.name == "cifar100"
    assert load_dataset("cifar100", "test", root=folder).labels.tolist() == [7]


@pytest.mark.parametrize("damage, message", [
    ("garbage", "cannot unpickle"),
    ("truncated", "cannot unpickle"),
    ("not_dict", "expected a dict"),
    ("missing_key", "missing key"),
    ("bad_shape", r"uint8 \(N, 3072\)"),
    ("label_count", "labels of shape"),
    ("label_range", "outside 0..9"),
])
def test_corrupt_cifar_raises(tmp_path, damage, message):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}
    if damage == "garbage":
        path.write_bytes(b"definitely not a pickle")
    elif damage == "truncated":
        path.write_bytes(pickle.dumps(good)[:50])
    elif damage == "not_dict":
        dump(path, [1, 2, 3])
    elif damage == "missing_key":
        dump(path, {b"data": good[b"data"]})
    elif damage == "bad_shape":
        dump(path, {b"data": np.zeros((2, 1024), np.uint8), b"labels": [1, 2]})
    elif damage == "label_count":
        dump(path, {b"data": good[b"data"], b"labels": [1]})
    else:
        dump(path, {b"data": good[b"data"], b"labels": [1, 10]})
    with pytest.raises(DataError, match=message):
        read_cifar(tmp_path, "train", 10)


def test_cifar_missing_files_and_bad_arguments(tmp_path):
    with pytest.raises(DataError, match="no CIFAR-10 data"):
        read_cifar(tmp_path, "train")
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="missing data file .*data_batch_5"):
        read_cifar(tmp_path, "train")
    with pytest.raises(DataError, match="10 or 100"):
        read_cifar(tmp_path, "test", num_classes=20)
    with pytest.raises(DataError, match="split"):
        read_cifar(tmp_path, "val")


# ---------------------------------------------------------------- SVHN

def test_read_svhn_layout_and_digit_zero(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    data = read_svhn(tmp_path, "train")
    assert data.images.shape == (4, 3, 32, 32) and data.images.is_contiguous()
    assert data.labels.tolist() == [0, 1, 9, 0]
    n, c, h, w = 2, 1, 3, 17
    assert data.images[n, c, h, w].item() == x[h, w, c, n]
    assert load_dataset("svhn", "train", root=tmp_path).classes == [str(d) for d in range(10)]


def test_corrupt_svhn_raises(tmp_path):
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, garbage" + bytes(200))
    with pytest.raises(DataError, match="corrupt SVHN file"):
        read_svhn(tmp_path, "test")
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8)})
    with pytest.raises(DataError, match="missing variable"):
        read_svhn(tmp_path, "train")
    scipy.io.savemat(tmp_path / "train_32x32.mat",
                     {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1), np.uint8)})
    with pytest.raises(DataError, match="2 images, 3 labels"):
        read_svhn(tmp_path, "train")
    with pytest.raises(DataError, match="missing data file"):
        read_svhn(tmp_path / "elsewhere", "train")


# ---------------------------------------------------------------- image folders

def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_read_image_folder_rgb_with_grey_converted(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (2, 5, 4, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (5, 4), dtype=np.uint8)
    save_png(tmp_path / "train" / "cat" / "a.png", rgb[0])
    save_png(tmp_path / "train" / "cat" / "b.png", grey)
    save_png(tmp_path / "train" / "ant" / "c.PNG", rgb[1])
    (tmp_path / "train" / "ant" / "notes.txt").write_text("ignored")
    save_png(tmp_path / "test" / "dog" / "d.png", rgb[0])  # a class present only in test
    data = load_dataset("imagefolder", "train", root=tmp_path)
    assert data.classes == ["ant", "cat", "dog"]
    assert data.labels.tolist() == [0, 1, 1]
    assert data.images.shape == (3, 3, 5, 4)
    np.testing.assert_array_equal(data.images[0].permute(1, 2, 0).numpy(), rgb[1])
    np.testing.assert_array_equal(data.images[1].permute(1, 2, 0).numpy(), rgb[0])
    for channel in range(3):  # PIL's L -> RGB replicates the grey value
        np.testing.assert_array_equal(data.images[2, channel].numpy(), grey)
    assert load_dataset("imagefolder", "test", root=tmp_path).labels.tolist() == [2]


def test_read_image_folder_grey_first_and_jpeg(tmp_path):
    grey = np.full((6, 6), 77, np.uint8)
    save_png(tmp_path / "train" / "a" / "1.png", grey)
    Image.fromarray(np.full((6, 6, 3), 200, np.uint8)).save(tmp_path / "train" / "a" / "2.jpg")
    data = read_image_folder(tmp_path, "train")
    assert data.images.shape == (2, 1, 6, 6)
    assert data.images[0].eq(77).all()
    assert (data.images[1].int() - 200).abs().max() <= 2  # JPEG is lossy


def test_image_folder_errors(tmp_path):
    save_png(tmp_path / "train" / "a" / "1.png", np.zeros((4, 4), np.uint8))
    save_png(tmp_path / "train" / "b" / "2.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(DataError, match="first image is 4x4"):
        read_image_folder(tmp_path, "train")
    (tmp_path / "train" / "b" / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="corrupt image .*2.png"):
        read_image_folder(tmp_path, "train")
    with pytest.raises(DataError, match="missing image folder"):
        read_image_folder(tmp_path, "test")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no .png/.jpg images"):
        read_image_folder(tmp_path, "empty")
    with pytest.raises(ConfigError, match="needs a root"):
        load_dataset("imagefolder")


# ---------------------------------------------------------------- ImageDataset, load_dataset

def test_image_dataset_subset_and_mean_std():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (9, 3, 4, 5), dtype=np.uint8)
    noncontiguous = torch.from_numpy(pixels.transpose(0, 1, 3, 2).copy()).transpose(2, 3)
    data = ImageDataset(noncontiguous, torch.tensor([0, 1, 2] * 3, dtype=torch.int32),
                        ["x", "y", "z"], "toy")
    assert data.images.is_contiguous() and data.labels.dtype == torch.int64
    mean, std = data.mean_std(chunk_size=4)
    scaled = pixels / 255.0
    np.testing.assert_allclose(mean, scaled.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, scaled.std(axis=(0, 2, 3)), rtol=1e-12)
    part = data.subset([8, 0])
    assert len(part) == 2 and part.labels.tolist() == [2, 0] and part.classes == data.classes
    np.testing.assert_array_equal(part.images.numpy(), pixels[[8, 0]])
    assert "toy" in repr(data) and "(9, 3, 4, 5)" in repr(data)


def test_image_dataset_rejects_bad_tensors():
    with pytest.raises(DataError, match="uint8"):
        ImageDataset(torch.zeros(2, 1, 3, 3), torch.zeros(2, dtype=torch.int64), ["a"], "t")
    with pytest.raises(DataError, match="labels of shape"):
        ImageDataset(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.zeros(3), ["a"], "t")
    with pytest.raises(DataError, match=r"0\.\.1"):
        ImageDataset(torch.zeros(2, 1, 3, 3, dtype=torch.uint8), torch.tensor([0, 2]),
                     ["a", "b"], "t")


def test_load_dataset_rejects_unknown_name_and_split():
    with pytest.raises(ConfigError, match="choose one of: .*cifar10.*fashion_mnist"):
        load_dataset("imagenet")
    with pytest.raises(ConfigError, match="split"):
        load_dataset("digits", "validation")
    assert set(dataset_names()) == {"fashion_mnist", "mnist", "cifar10", "cifar100", "svhn",
                                    "imagefolder", "digits", "image_folder_stream", "tar_shards"}


def test_digits_scaling_and_fixed_stratified_split():
    from sklearn.datasets import load_digits

    reference = load_digits()
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == round(0.2 * 1797)
    assert train.images.shape[1:] == (1, 8, 8) and train.images.max() == 255
    # every image is a scaled original: compare as multisets of (image bytes, label)
    expected = sorted((np.rint(img * 255 / 16).astype(np.uint8).tobytes(), int(t))
                      for img, t in zip(reference.images, reference.target))
    got = sorted((img.numpy().tobytes(), int(t))
                 for part in (train, test) for img, t in zip(part.images[:, 0], part.labels))
    assert got == expected
    counts_all = np.bincount(reference.target)
    counts_test = test.labels.bincount().numpy()
    assert np.all(np.abs(counts_test - 0.2 * 1797 * counts_all / 1797) < 1)
    assert torch.equal(load_dataset("digits", "test").images, test.images)  # fixed seed


REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    train = load_dataset("fashion_mnist", "train", root=REAL_FASHION)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.num_classes == 10
    assert train.labels.bincount().tolist() == [6000] * 10
    mean, std = train.mean_std()
    assert abs(mean[0] - 0.2860) < 1e-3 and abs(std[0] - 0.3530) < 1e-3  # published statistics
