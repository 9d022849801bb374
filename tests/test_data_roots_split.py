"""Data-root lookup order and class-stratified splits."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from auglabel.data import resolve_root, stratified_split, subsample_indices
from auglabel.data import roots
from auglabel.errors import ConfigError, DataError

# ---------------------------------------------------------------- roots


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Isolated environment: every lookup location under tmp_path, none existing yet."""
    for variable in ("AUGLABEL_DATA", "AUGLABEL_DATA_FASHION_MNIST", "AUGLABEL_DATA_CIFAR10"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(roots, "SYSTEM_DATASETS_DIR", tmp_path / "system")
    return {
        "explicit": tmp_path / "explicit",
        "specific": tmp_path / "specific",
        "parent": tmp_path / "parent" / "cifar10",
        "cache": tmp_path / "xdg" / "auglabel" / "datasets" / "cifar10",
        "system": tmp_path / "system" / "cifar10",
    }


def test_lookup_order(places, monkeypatch):
    for path in places.values():
        path.mkdir(parents=True)
    monkeypatch.setenv("AUGLABEL_DATA_CIFAR10", str(places["specific"]))
    monkeypatch.setenv("AUGLABEL_DATA", str(places["parent"].parent))
    assert resolve_root("cifar10", places["explicit"]) == places["explicit"]
    assert resolve_root("cifar10", str(places["explicit"])) == places["explicit"]
    assert resolve_root("cifar10") == places["specific"]
    monkeypatch.delenv("AUGLABEL_DATA_CIFAR10")
    assert resolve_root("cifar10") == places["parent"]
    places["parent"].rmdir()
    assert resolve_root("cifar10") == places["cache"]
    places["cache"].rmdir()
    assert resolve_root("cifar10") == places["system"]


def test_folder_aliases_and_env_name(places, monkeypatch, tmp_path):
    debian = tmp_path / "system" / "fashion-mnist"
    debian.mkdir(parents=True)
    assert resolve_root("fashion_mnist") == debian
    archive = tmp_path / "parent" / "cifar-10-batches-py"
    archive.mkdir(parents=True)
    monkeypatch.setenv("AUGLABEL_DATA", str(archive.parent))
    assert resolve_root("cifar10") == archive
    assert roots.env_var_name("fashion-mnist") == "AUGLABEL_DATA_FASHION_MNIST"
    monkeypatch.setenv("AUGLABEL_DATA_FASHION_MNIST", str(archive))
    assert resolve_root("fashion-mnist") == archive


def test_cache_dir_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert roots.cache_dir() == tmp_path / ".cache" / "auglabel" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec
    assert roots.cache_dir() == tmp_path / ".cache" / "auglabel" / "datasets"


def test_missing_everywhere_lists_places_and_fixes(places, tmp_path):
    with pytest.raises(DataError) as info:
        resolve_root("fashion_mnist")
    message = str(info.value)
    assert "\n" not in message
    for looked in ("$AUGLABEL_DATA_FASHION_MNIST", "$AUGLABEL_DATA",
                   str(tmp_path / "xdg" / "auglabel" / "datasets" / "fashion_mnist"),
                   str(tmp_path / "system" / "fashion-mnist")):
        assert looked in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data.root" in message
    with pytest.raises(DataError, match="cifar10") as info:
        resolve_root("cifar10")
    assert "apt-get" not in str(info.value)


def test_explicit_or_specific_root_must_exist(places, monkeypatch, tmp_path):
    places["system"].mkdir(parents=True)  # a fallback that must not hide the mistake
    with pytest.raises(DataError, match="does not exist"):
        resolve_root("cifar10", tmp_path / "typo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        resolve_root("cifar10", tmp_path / "file")
    monkeypatch.setenv("AUGLABEL_DATA_CIFAR10", str(tmp_path / "typo"))
    with pytest.raises(DataError, match=r"\$AUGLABEL_DATA_CIFAR10"):
        resolve_root("cifar10")


# ---------------------------------------------------------------- splits

def hamilton(counts: list[int], total: int) -> list[int]:
    """Largest-remainder apportionment in exact fractions (for cases without tied remainders)."""
    quotas = [Fraction(total * c, sum(counts)) for c in counts]
    shares = [q.numerator // q.denominator for q in quotas]
    by_remainder = sorted(range(len(counts)), key=lambda i: quotas[i] - shares[i], reverse=True)
    for i in by_remainder[: total - sum(shares)]:
        shares[i] += 1
    return shares


def check_partition(labels: torch.Tensor, train: torch.Tensor, val: torch.Tensor) -> None:
    for part in (train, val):
        assert part.dtype == torch.int64
        assert torch.equal(part, part.sort().values)
    merged = torch.cat([train, val]).sort().values
    assert torch.equal(merged, torch.arange(len(labels)))  # disjoint and complete


LABEL_SETS = {
    "balanced": torch.arange(10).repeat(30),
    "imbalanced": torch.cat([torch.full((n,), c) for c, n in enumerate([97, 41, 13, 5, 2, 1])]),
    "shuffled": torch.randint(0, 7, (503,), generator=torch.Generator().manual_seed(0)),
}


@pytest.mark.parametrize("name", list(LABEL_SETS))
@pytest.mark.parametrize("val_size", [1, 17, 0.1, 0.33, 0.5])
def test_split_properties(name, val_size):
    labels = LABEL_SETS[name]
    train, val = stratified_split(labels, val_size, seed=3)
    check_partition(labels, train, val)
    n = len(labels)
    expected = val_size if isinstance(val_size, int) else int(np.floor(val_size * n + 0.5))
    assert len(val) == expected
    counts = labels.bincount()
    val_counts = labels[val].bincount(minlength=len(counts))
    quota = expected * counts.double() / n
    assert torch.all((val_counts - quota).abs() < 1)
    assert torch.all(labels[train].bincount(minlength=len(counts))[counts >= 2] >= 1)


def test_split_matches_largest_remainder_by_hand():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2])
    # quotas 1.8, 0.9, 0.3: floors 1, 0, 0; two leftovers to the largest remainders (1, then 0)
    _, val = stratified_split(labels, 3, seed=0)
    assert labels[val].bincount(minlength=3).tolist() == [2, 1, 0]
    counts = [50, 31, 12, 7]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    for size in (9, 23, 41):
        _, val = stratified_split(labels, size, seed=1)
        assert labels[val].bincount(minlength=4).tolist() == hamilton(counts, size)


def test_split_keeps_a_training_sample_per_class():
    labels = torch.tensor([0] * 2 + [1] * 8)
    # quotas 1.4 and 5.6 -> 1 and 6; class 0 keeps one of its two samples
    train, val = stratified_split(labels, 0.7, seed=0)
    assert labels[val].bincount().tolist() == [1, 6]
    labels = torch.tensor([0] * 10 + [1])  # a singleton class stays in training
    for seed in range(5):
        train, val = stratified_split(labels, 5, seed=seed)
        assert 10 in train.tolist() and len(val) == 5
    with pytest.raises(ConfigError, match="every class a training sample"):
        stratified_split(torch.tensor([0, 0, 1, 1, 2, 2]), 4, seed=0)


def test_split_deterministic_and_seed_dependent():
    labels = LABEL_SETS["shuffled"]
    first = stratified_split(labels, 0.2, seed=7)
    again = stratified_split(labels, 0.2, seed=7)
    other = stratified_split(labels, 0.2, seed=8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[1], other[1])
    as_list = stratified_split(labels.tolist(), 0.2, seed=7)
    as_numpy = stratified_split(labels.numpy(), 0.2, seed=7)
    assert torch.equal(as_list[1], first[1]) and torch.equal(as_numpy[1], first[1])


def test_split_randomness_is_per_sample_and_per_tie():
    labels = torch.arange(4).repeat_interleave(5)  # 4 classes of 5
    picked = torch.zeros(20)
    tied_classes = torch.zeros(4)
    for seed in range(200):
        _, val = stratified_split(labels, 4, seed=seed)
        picked[val] += 1
        _, val = stratified_split(labels, 2, seed=seed)  # quotas 0.5 each: a 4-way tie
        tied_classes[labels[val]] += 1
    # every sample is drawn with probability 1/5 -> 40 of 200; 4 sd is about 23
    assert picked.min() > 17 and picked.max() < 63
    # every class gets a validation slot with probability 1/2 -> 100 of 200
    assert tied_classes.sum() == 400 and tied_classes.min() > 65


@pytest.mark.parametrize("bad", [0, -1, 20, 21, 0.0, 1.0, 1.5, -0.2, 0.01, True,
                                 "0.1", None, float("nan")])
def test_split_rejects_bad_sizes(bad):
    with pytest.raises(ConfigError, match="val_size"):
        stratified_split(torch.arange(4).repeat(5), bad, seed=0)


def test_split_rejects_bad_labels_and_seed():
    with pytest.raises(ConfigError, match="1-D integer"):
        stratified_split(torch.zeros(3, 2, dtype=torch.int64), 1, seed=0)
    with pytest.raises(ConfigError, match="1-D integer"):
        stratified_split(torch.tensor([0.0, 1.0, 1.0]), 1, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        stratified_split(torch.tensor([0, 0, 1, 1]), 1, seed="x")


def test_subsample_indices():
    labels = LABEL_SETS["imbalanced"]
    counts = labels.bincount().tolist()
    chosen = subsample_indices(labels, 40, seed=2)
    assert len(chosen) == 40 and chosen.dtype == torch.int64
    assert torch.equal(chosen, chosen.unique())  # sorted and distinct
    assert labels[chosen].bincount(minlength=6).tolist() == hamilton(counts, 40)
    assert torch.equal(chosen, subsample_indices(labels, 40, seed=2))
    assert not torch.equal(chosen, subsample_indices(labels, 40, seed=3))
    assert torch.equal(subsample_indices(labels, len(labels), seed=0), torch.arange(len(labels)))
    for bad in (0, len(labels) + 1, 0.5, True, -3):
        with pytest.raises(ConfigError, match="subset size"):
            subsample_indices(labels, bad, seed=0)
