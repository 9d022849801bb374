"""-C sets on disk: our writer, the official CIFAR-10-C layout, the cache, bad directories."""
import os

import numpy as np
import pytest
import torch

from auglabel.corruptions import corrupt
from auglabel.errors import ConfigError, DataError
from auglabel.robustness import corruption_data as cd
from auglabel.robustness.corruption_data import (CorruptedSet, corrupted_cache_dir, generate_corrupted_set,
                                                 load_corrupted_set)

NAMES = ["gaussian_noise", "contrast"]


def _images(n, c, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), generator=g, dtype=torch.uint8)


def _snapshot(directory):
    if not directory.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 10)])
def test_round_trip_layout_and_content(tmp_path, channels, size):
    images, labels = _images(6, channels, size), torch.tensor([0, 1, 2, 0, 1, 2])
    out = generate_corrupted_set(images, labels, tmp_path / "c", NAMES, seed=3, progress=False)
    # the official layout on disk: (5N, H, W, C) uint8 severity-major, labels tiled 5 times
    raw = np.load(out / "gaussian_noise.npy")
    assert raw.shape == (30, size, size, channels) and raw.dtype == np.uint8
    assert np.array_equal(np.load(out / "labels.npy"), np.tile(labels.numpy(), 5))
    loaded, got_labels = load_corrupted_set(out)
    assert list(loaded) == NAMES and torch.equal(got_labels, labels)
    for name in NAMES:
        stacked = loaded[name]
        assert stacked.shape == (5, 6, channels, size, size) and stacked.dtype == torch.uint8
        on_disk = torch.from_numpy(np.load(out / f"{name}.npy")).reshape(5, 6, size, size, channels)
        assert torch.equal(stacked, on_disk.permute(0, 1, 4, 2, 3))
        for severity in (1, 5):  # every severity block is that severity's corruption of the clean images
            expected = corrupt(images, name, severity, cd._chunk_seed(3, 0))
            assert torch.equal(stacked[severity - 1], expected)


def test_seeded_and_per_image_randomness(tmp_path):
    same = _images(1, 1, 8).expand(6, -1, -1, -1).contiguous()  # six copies of one image
    labels = torch.zeros(6, dtype=torch.int64)
    a = generate_corrupted_set(same, labels, tmp_path / "a", ["gaussian_noise"], seed=1, progress=False)
    b = generate_corrupted_set(same, labels, tmp_path / "b", ["gaussian_noise"], seed=1, progress=False)
    c = generate_corrupted_set(same, labels, tmp_path / "c", ["gaussian_noise"], seed=2, progress=False)
    read = lambda d: load_corrupted_set(d)[0]["gaussian_noise"]  # noqa: E731
    assert torch.equal(read(a), read(b))
    assert not torch.equal(read(a), read(c))
    noisy = read(a)[2]
    assert len({bytes(img.numpy()) for img in noisy}) == 6  # each copy got its own noise


def test_chunks_get_their_own_seed(tmp_path, monkeypatch):
    monkeypatch.setattr(cd, "CHUNK_SIZE", 2)
    same = _images(1, 1, 8).expand(4, -1, -1, -1).contiguous()
    out = generate_corrupted_set(same, torch.zeros(4, dtype=torch.int64), tmp_path / "c", ["gaussian_noise"],
                                 progress=False)
    first = load_corrupted_set(out)[0]["gaussian_noise"][0]
    assert not torch.equal(first[:2], first[2:])


def _official(tmp_path, n=4, shape=(32, 32, 3), names=("fog", "snow"), labels_dtype=np.uint8):
    """A CIFAR-10-C-like folder written directly with numpy."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    arrays = {}
    for name in names:
        arrays[name] = rng.integers(0, 256, (5 * n, *shape), dtype=np.uint8)
        np.save(folder / f"{name}.npy", arrays[name])
    labels = rng.integers(0, 10, n)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(labels_dtype))
    return folder, arrays, labels


def test_reads_official_layout(tmp_path):
    folder, arrays, labels = _official(tmp_path)
    loaded, got_labels = load_corrupted_set(folder)
    assert list(loaded) == ["snow", "fog"]  # the benchmark's order, only the files present
    assert got_labels.dtype == torch.int64 and got_labels.tolist() == labels.tolist()
    for name, array in arrays.items():
        expected = torch.from_numpy(array.reshape(5, 4, 32, 32, 3).transpose(0, 1, 4, 2, 3).copy())
        assert torch.equal(loaded[name], expected)
    rows = torch.tensor([3, 1])
    assert torch.equal(CorruptedSet(folder, ["fog"]).images("fog", rows), loaded["fog"][:, rows])


def test_reads_grayscale_without_channel_axis(tmp_path):
    folder, arrays, _ = _official(tmp_path, shape=(28, 28), names=("fog",))
    stacked = load_corrupted_set(folder)[0]["fog"]
    assert stacked.shape == (5, 4, 1, 28, 28)
    assert torch.equal(stacked[:, :, 0], torch.from_numpy(arrays["fog"].reshape(5, 4, 28, 28)))


def test_bad_directories(tmp_path):
    folder, _, labels = _official(tmp_path)
    with pytest.raises(ConfigError, match="unknown corruption 'fgo'"):
        CorruptedSet(folder, ["fgo"])
    with pytest.raises(DataError, match="lacks frost.npy"):
        CorruptedSet(folder, ["frost"])
    with pytest.raises(DataError, match="expected"):
        CorruptedSet(folder, ["fog"], image_shape=(1, 32, 32))
    with pytest.raises(DataError, match="does not exist"):
        CorruptedSet(tmp_path / "nowhere")
    np.save(folder / "snow.npy", np.zeros((19, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="not a multiple of the 5 severities"):
        CorruptedSet(folder, ["snow"])
    np.save(folder / "snow.npy", np.zeros((25, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match="labels for 5 x 4"):
        CorruptedSet(folder, ["snow"])
    np.save(folder / "snow.npy", np.zeros((20, 30, 30, 3), np.uint8))
    with pytest.raises(DataError, match="expected"):
        CorruptedSet(folder)  # fog is 32x32, snow 30x30
    (folder / "snow.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read"):
        CorruptedSet(folder, ["snow"])
    tiles = np.tile(labels, 5)
    tiles[-1] = (tiles[-1] + 1) % 10
    np.save(folder / "labels.npy", tiles)
    with pytest.raises(DataError, match="do not hold the same labels"):
        CorruptedSet(folder, ["fog"])
    np.save(folder / "labels.npy", np.zeros(7, np.int64))
    with pytest.raises(DataError, match="5 \\* N labels"):
        CorruptedSet(folder, ["fog"])
    (folder / "labels.npy").unlink()
    with pytest.raises(DataError, match="lacks labels.npy"):
        CorruptedSet(folder, ["fog"])


def test_generation_refuses_bad_input_and_writes_nothing(tmp_path):
    images, labels = _images(3, 1, 8), torch.tensor([0, 1, 2])
    out = tmp_path / "c"
    with pytest.raises(ConfigError, match="unknown corruption"):
        generate_corrupted_set(images, labels, out, ["gaussian_noise", "rain"], progress=False)
    with pytest.raises(DataError, match="uint8"):
        generate_corrupted_set(images.float(), labels, out, NAMES, progress=False)
    with pytest.raises(DataError, match="labels"):
        generate_corrupted_set(images, labels[:2], out, NAMES, progress=False)
    assert not out.exists()
    generate_corrupted_set(images, labels, out, ["contrast"], progress=False)
    before = _snapshot(out)
    with pytest.raises(DataError, match="other images or another seed"):
        generate_corrupted_set(images, labels, out, ["contrast"], seed=5, progress=False)
    with pytest.raises(DataError, match="other images"):
        generate_corrupted_set(_images(3, 1, 8, seed=9), labels, out, ["contrast"], progress=False)
    assert _snapshot(out) == before


def test_cache_is_reused_and_extended(tmp_path, monkeypatch):
    images, labels = _images(4, 3, 8), torch.tensor([1, 0, 1, 0])
    out = generate_corrupted_set(images, labels, tmp_path / "c", ["contrast"], progress=False)
    stamp = os.stat(out / "contrast.npy").st_mtime_ns
    calls = []
    real = cd.corrupt

    def counting(batch, name, severity, seed):
        calls.append(name)
        return real(batch, name, severity, seed)

    monkeypatch.setattr(cd, "corrupt", counting)
    generate_corrupted_set(images, labels, out, ["contrast", "fog"], progress=False)
    assert set(calls) == {"fog"} and len(calls) == 5  # only the new corruption is generated
    assert os.stat(out / "contrast.npy").st_mtime_ns == stamp
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_interrupted_generation_leaves_whole_files_only(tmp_path, monkeypatch):
    real = cd.corrupt

    def failing(batch, name, severity, seed):
        if name == "fog" and severity == 3:
            raise KeyboardInterrupt
        return real(batch, name, severity, seed)

    monkeypatch.setattr(cd, "corrupt", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_corrupted_set(_images(3, 1, 8), torch.tensor([0, 1, 2]), tmp_path / "c", ["contrast", "fog"],
                               progress=False)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["auglabel-corrupted.json", "contrast.npy",
                                                                   "labels.npy"]


def test_cache_location_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    idx = torch.arange(10)
    base = corrupted_cache_dir("fashion_mnist", idx, 0)
    assert base.parent == tmp_path / "xdg" / "auglabel" / "corrupted"
    assert base.name.startswith("fashion_mnist-")
    assert corrupted_cache_dir("fashion_mnist", torch.arange(10), 0) == base
    others = {corrupted_cache_dir("mnist", idx, 0), corrupted_cache_dir("fashion_mnist", idx, 1),
              corrupted_cache_dir("fashion_mnist", idx[:9], 0),
              corrupted_cache_dir("fashion_mnist", idx, 0, images=_images(10, 1, 8))}
    assert base not in others and len(others) == 4
