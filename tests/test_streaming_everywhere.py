"""Streamed image folders work wherever in-memory datasets do: AutoDO's hyper pass, evaluate (every suite),
calibrate, -C generation and datasets handed to the Trainer.

The folder holds 16x16 RGB PNGs, so with ``crop_scale: 1`` the streamed samples are the very pixels the
in-memory ``imagefolder`` reads: a streamed run must then give the in-memory run's numbers exactly."""

import numpy as np
import pytest
import torch
from PIL import Image

from auglabel import Trainer
from auglabel.autodo.hyper import _shuffled
from auglabel.cli import main
from auglabel.commands import calibrate_run, corrupt_dataset, evaluate_run
from auglabel.data import StreamingLoader, load_dataset
from auglabel.data.loader import DeviceLoader
from auglabel.data.stream_loader import decode_images
from auglabel.engine.config import ExperimentConfig
from auglabel.engine.objects import HandedIn
from auglabel.errors import ConfigError, DataError
from auglabel.robustness import sources
from state_helper import state_of

CLASSES = ["a", "b", "c"]
SIZE = 16
CORRUPTIONS = "gaussian_noise,brightness"
COMPARED = ("clean.", "temperature.", "corruption.", "perturbation.", "adversarial.", "ood.")


def write_pngs(root, per_class=20, test_per_class=8, size=SIZE, seed=0):
    """root/{train,test}/<class>/*.png, size x size RGB; class c is somewhat brighter in channel c."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 160, (size, size, 3), dtype=np.uint8)
                pixels[..., label] += rng.integers(20, 90, dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:03d}.png")
    return root


def config(data, *, autodo=True, epochs=2):
    raw = {"data": {"val_size": 12, "num_workers": 0, **data}, "model": {"name": "small_cnn"},
           "augment": {"name": "autodo" if autodo else "standard"},
           "labels": {"name": "autodo", "params": {"hyper_start": 0}} if autodo else {"name": "onehot"},
           "optim": {"lr": 0.05, "warmup_epochs": 0.5},
           "train": {"epochs": epochs, "batch_size": 16, "eval_batch_size": 16, "device": "cpu", "threads": 1,
                     "seed": 0}}
    return ExperimentConfig.from_dict(raw)


def stream_data(root, **extra):
    return {"name": "image_folder_stream", "root": str(root), "image_size": SIZE, "crop_scale": 1.0, **extra}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    different = [key for key in a if not (torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor)
                                          else a[key] == b[key])]
    assert not different, different


def numbers(metrics):
    return {key: value for key, value in metrics.items()
            if key.startswith(COMPARED) and key not in ("corruption.directory",)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_pngs(tmp_path_factory.mktemp("pngs"))


@pytest.fixture(scope="module")
def runs(folder, tmp_path_factory):
    """AutoDO (hyper pass after epoch 1) trained from the config on the streamed folder (2 decoding workers)
    and on the in-memory imagefolder of the same files."""
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for kind, data in (("stream", stream_data(folder, num_workers=2)), ("memory", {"name": "imagefolder",
                                                                                    "root": str(folder)})):
        trainer = Trainer(config(data), base / kind, progress=False)
        metrics = trainer.fit()
        out[kind] = {"dir": base / kind, "metrics": metrics, "state": state_of(trainer),
                     "log": (base / kind / "log.csv").read_text()}
    return out


def test_shuffled_loaders_keep_kind_order_and_transform(tmp_path):
    root = write_pngs(tmp_path / "d", per_class=10, test_per_class=1)
    dataset = load_dataset("image_folder_stream", "train", root=root, image_size=8)  # random crops in training
    indices = torch.arange(0, 30, 2)
    memory_val = DeviceLoader(torch.zeros(30, 3, 8, 8, dtype=torch.uint8), dataset.labels, indices, 3, 4, train=False)
    stream_val = StreamingLoader(dataset, indices, 3, 4, train=False, num_workers=0)
    stream_train = StreamingLoader(dataset, indices, 3, 4, train=True, seed=3, num_workers=2)
    memory, clean, noisy = _shuffled(memory_val, 8, 11), _shuffled(stream_val, 8, 11, clean=True), \
        _shuffled(stream_train, 8, 11)
    assert isinstance(memory, DeviceLoader) and isinstance(clean, StreamingLoader) and noisy.num_workers == 2
    direct = DeviceLoader(memory_val.images, dataset.labels, indices, 3, 8, train=True, seed=11)
    for loader in (memory, clean, noisy, direct):
        loader.set_epoch(2)
    assert [b.index.tolist() for b in memory] == [b.index.tolist() for b in clean] == \
        [b.index.tolist() for b in noisy] == [b.index.tolist() for b in direct]
    assert len(clean) == 1 and all(torch.equal(x.inputs, y.inputs) for x, y in zip(memory, direct))
    for batch in clean:  # validation side: the evaluation transform
        expected = torch.stack([dataset.decode(int(r), train=False) for r in batch.index])
        assert torch.equal((batch.inputs * 255).round().to(torch.uint8), expected)
    for batch in noisy:  # training side: training's random crops (seeded by the shuffled loader's seed)
        expected = torch.stack([dataset.decode(int(r), train=True, seed=11, epoch=2) for r in batch.index])
        assert torch.equal((batch.inputs * 255).round().to(torch.uint8), expected)
        evaluation = torch.stack([dataset.decode(int(r), train=False) for r in batch.index])
        assert not torch.equal(expected, evaluation)
    train_clean = _shuffled(stream_train, 8, 11, clean=True)  # clean: no training randomness whatever the source
    train_clean.set_epoch(2)
    for batch in train_clean:
        expected = torch.stack([dataset.decode(int(r), train=False) for r in batch.index])
        assert torch.equal((batch.inputs * 255).round().to(torch.uint8), expected)
    for loader in (noisy, train_clean, stream_train):
        loader.close()


def test_decode_images_in_order_any_workers_and_one_line_errors(tmp_path, folder):
    dataset = load_dataset("image_folder_stream", "test", root=folder, image_size=SIZE)
    rows = torch.tensor([5, 0, 23, 7])
    expected = torch.stack([dataset.decode(int(r), train=False) for r in rows])
    for workers in (0, 2):
        assert torch.equal(decode_images(dataset, rows, num_workers=workers), expected)
    assert decode_images(dataset, torch.tensor([], dtype=torch.int64)).shape == (0, 3, SIZE, SIZE)
    memory = load_dataset("imagefolder", "test", root=folder)
    assert torch.equal(expected, memory.images[rows])  # 16x16 PNGs: the stored pixels
    bad = write_pngs(tmp_path / "bad", per_class=2, test_per_class=2)
    (bad / "test" / "b" / "001.png").write_bytes(b"no image here")
    broken = load_dataset("image_folder_stream", "test", root=bad, image_size=SIZE)
    with pytest.raises(DataError, match="unreadable image .*001.png") as error:
        decode_images(broken, torch.arange(len(broken)))
    assert len(str(error.value).splitlines()) == 1


def test_autodo_on_a_streamed_folder_equals_in_memory(runs):
    stream, memory = runs["stream"], runs["memory"]
    header, first = stream["log"].splitlines()[:2]
    batches = dict(zip(header.split(","), first.split(",")))["autodo_hyper_batches"]
    assert float(batches) >= 1  # the hyper pass ran after epoch 1
    assert_same_state(stream["state"], memory["state"])  # model, learned augmentation, weights and soft labels
    for key in ("accuracy", "ece", "nll", "brier", "count", "per_class_accuracy", "val"):
        assert stream["metrics"][key] == memory["metrics"][key], key
    assert stream["metrics"]["count"] == 24


def test_handed_in_streamed_datasets_train_like_the_config_path(runs, folder, tmp_path):
    train = load_dataset("image_folder_stream", "train", root=folder, image_size=SIZE, crop_scale=1.0)
    test = load_dataset("image_folder_stream", "test", root=folder, image_size=SIZE, crop_scale=1.0)
    trainer = Trainer(config({"name": "digits"}), tmp_path / "handed", progress=False, train_data=train,
                      test_data=test)
    metrics = trainer.fit()
    assert_same_state(state_of(trainer), runs["stream"]["state"])
    assert metrics["accuracy"] == runs["stream"]["metrics"]["accuracy"] and metrics["count"] == 24
    assert metrics["dataset"] == "image_folder_stream"
    small = load_dataset("image_folder_stream", "test", root=folder, image_size=8)
    with pytest.raises(ConfigError, match="shape"):
        HandedIn(train_data=train, test_data=small)
    with pytest.raises(ConfigError, match="StreamingImageFolder"):
        HandedIn(train_data=train, test_data=[1, 2])


def test_every_suite_and_calibrate_on_a_streamed_run_equal_in_memory(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    request = {"suites": "clean,corruptions,perturbations,adversarial,ood", "subsample": 6,
               "corruptions": CORRUPTIONS, "progress": False}
    got = {kind: evaluate_run(runs[kind]["dir"], **request) for kind in ("stream", "memory")}
    for prefix in COMPARED:
        assert any(key.startswith(prefix) for key in got["stream"]), prefix
    assert numbers(got["stream"]) == numbers(got["memory"])
    assert got["stream"]["robustness.count"] == got["stream"]["corruption.count"] == 6
    assert (tmp_path / "cache" / "auglabel" / "corrupted").is_dir()
    calibrated = {kind: calibrate_run(runs[kind]["dir"]) for kind in ("stream", "memory")}
    assert calibrated["stream"] == calibrated["memory"]


def test_clean_suite_streams_the_whole_split_without_decoding_it_into_memory(runs, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the clean suite must not materialise the test split")

    monkeypatch.setattr(sources, "decode_images", refuse)
    got = {kind: evaluate_run(runs[kind]["dir"], progress=False) for kind in ("stream", "memory")}
    assert numbers(got["stream"]) == numbers(got["memory"])
    assert got["stream"]["count"] == got["stream"]["robustness.count"] == 24


def test_too_large_a_streamed_selection_is_a_one_line_error(runs, monkeypatch, capsys):
    monkeypatch.setattr(sources, "MAX_DECODED_BYTES", 10 * 3 * SIZE * SIZE)
    with pytest.raises(ConfigError, match="--subsample") as error:
        evaluate_run(runs["stream"]["dir"], suites="adversarial", progress=False)
    assert len(str(error.value).splitlines()) == 1 and "24 selected images" in str(error.value)
    assert main(["evaluate", str(runs["stream"]["dir"]), "--suite", "perturbations"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auglabel: error:") and "--subsample" in err and len(err.splitlines()) == 1


def test_corrupt_dataset_decodes_a_streamed_test_split(folder, tmp_path):
    with pytest.raises(ConfigError, match="image_size"):
        corrupt_dataset("image_folder_stream", root=str(folder), out=str(tmp_path / "x"))
    out = corrupt_dataset("image_folder_stream", root=str(folder), out=str(tmp_path / "c"), corruptions="brightness",
                          subsample=3, image_size=SIZE)
    memory = corrupt_dataset("imagefolder", root=str(folder), out=str(tmp_path / "m"), corruptions="brightness",
                             subsample=3)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(p.name for p in memory.iterdir()) and "brightness.npy" in written
    assert np.array_equal(np.load(out / "brightness.npy"), np.load(memory / "brightness.npy"))
    cli_out = tmp_path / "cli"
    assert main(["data", "corrupt", "image_folder_stream", "--root", str(folder), "--out", str(cli_out),
                 "--corruptions", "brightness", "--subsample", "3", "--image_size", str(SIZE)]) == 0
    assert np.array_equal(np.load(cli_out / "brightness.npy"), np.load(memory / "brightness.npy"))
