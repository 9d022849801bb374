"""AutoLabel: buckets, targets, the calibration-guided update, state and resume."""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES
from auglabel.labels.autolabel import bucket_index, single_label_targets, two_image_targets


def _autolabel(**params):
    strategy = LABEL_STRATEGIES.build("autolabel", **params)
    strategy.bind(AUGMENTATIONS.build("gaussian_noise"))
    return strategy


def test_bucket_edges():
    d = torch.tensor([0.0, 0.1, 0.1000001, 0.55, 0.9999, 1.0])
    assert bucket_index(d, 10).tolist() == [0, 0, 1, 5, 9, 9]
    # mixup: gamma = 0.5 is the farthest mix, 2 * min(g, 1 - g) = 1 -> last bucket
    assert bucket_index(torch.tensor([2 * 0.5]), 10).tolist() == [9]
    # adversarial: eps = eps_max -> last bucket; eps = 0 -> first
    assert bucket_index(torch.tensor([0.03 / 0.03, 0.0]), 4).tolist() == [3, 0]


def test_single_label_targets_hand_example():
    one_hot = torch.eye(4)[[2]]
    targets = single_label_targets(one_hot, torch.tensor([0.7]))
    assert torch.allclose(targets, torch.tensor([[0.1, 0.1, 0.7, 0.1]]))


@pytest.mark.parametrize("label,partner,gamma,t,expected", [
    # dominant = own class 0 (gamma 0.7): 0.8; partner class 2: min(0.2, 0.3/0.7*0.8) = 0.2
    (0, 2, 0.7, 0.8, [0.8, 0.0, 0.2, 0.0]),
    # dominant = partner class 2 (gamma 0.2): 0.6; own class 0: min(0.4, 0.25*0.6) = 0.15; 0.25 over 2
    (0, 2, 0.2, 0.6, [0.15, 0.125, 0.6, 0.125]),
    # both images of class 1: 0.8 + min(0.2, 0.3/0.7*0.8) = 1.0
    (1, 1, 0.7, 0.8, [0.0, 1.0, 0.0, 0.0]),
    # both of class 1, t = 0.5: 0.5 + 0.3/0.7*0.5 = 0.714286; rest 0.285714 over 3 classes
    (1, 1, 0.3, 0.5, [0.095238, 0.714286, 0.095238, 0.095238]),
    # gamma = 0.5 exactly: own class dominates by convention, other gets min(1 - t, t)
    (3, 0, 0.5, 0.7, [0.3, 0.0, 0.0, 0.7]),
])
def test_two_image_targets_hand_examples(label, partner, gamma, t, expected):
    targets = two_image_targets(torch.tensor([label]), torch.tensor([partner]), torch.tensor([gamma]),
                                torch.tensor([t]), 4)
    assert torch.allclose(targets, torch.tensor([expected]), atol=1e-6)
    assert targets.sum().item() == pytest.approx(1.0)


def test_targets_sum_to_one_and_clean_views_stay_one_hot():
    strategy = _autolabel(num_buckets=5)
    strategy.values.copy_(torch.linspace(0.5, 1.0, 5)[None])
    g = torch.Generator().manual_seed(0)
    n, k = 64, 10
    labels = torch.randint(0, k, (n,), generator=g)
    info = {"distance": torch.rand(n, generator=g), "view": torch.arange(n) % 3}
    batch = Batch(torch.rand(n, 1, 4, 4), labels, torch.arange(n), k, info=info)
    targets = strategy.targets(torch.zeros(n, k), batch)
    assert torch.allclose(targets.sum(1), torch.ones(n))
    clean = info["view"] == 0
    assert torch.equal(targets[clean], torch.eye(k)[labels[clean]])
    expected_t = torch.linspace(0.5, 1.0, 5)[bucket_index(info["distance"], 5)]
    assert torch.allclose(targets[~clean, :].gather(1, labels[~clean, None]).squeeze(1), expected_t[~clean])


class FixedConfidenceModel(nn.Module):
    """Predicts the true class for even dataset indices, class (y+1) for odd: accuracy 0.5 when
    indices alternate; the top probability is ``confidence`` on a 10-class problem."""

    def __init__(self, confidence: float, correct_every: int = 2):
        super().__init__()
        self.confidence, self.correct_every = confidence, correct_every
        self.dummy = nn.Parameter(torch.zeros(()))
        self.current = None

    def forward(self, x):
        labels, index = self.current
        k = 10
        predicted = torch.where(index % self.correct_every == 0, labels, (labels + 1) % k)
        rest = (1 - self.confidence) / (k - 1)
        probs = torch.full((len(labels), k), rest)
        probs[torch.arange(len(labels)), predicted] = self.confidence
        return probs.log()


class Passthrough(nn.Module):
    bucket_groups = 1

    def __init__(self, model):
        super().__init__()
        self.model = model

    def apply_at_distance(self, batch, distance, *, generator, model=None, group=None):
        self.model.current = (batch.labels, batch.index)
        return batch


def _val_loader(n=2000, k=10):
    labels = torch.arange(n) % k
    return [Batch(torch.zeros(500, 1, 2, 2), labels[i:i + 500], torch.arange(i, i + 500), k) for i in range(0, n, 500)]


def _epoch_context(model, strategy, tmp_path):
    return SimpleNamespace(epoch=1, model=model, augment=Passthrough(model), labels=strategy,
                           val_loader=_val_loader(), generator=torch.Generator().manual_seed(0),
                           dist=SimpleNamespace(is_main=True), run_dir=tmp_path)


def test_overconfident_model_moves_values_down_and_respects_clip(tmp_path):
    # one bucket: accuracy exactly 0.5 at confidence 0.95 -> ECE 0.45 -> t = 1 - 0.45
    model = FixedConfidenceModel(confidence=0.95)
    strategy = _autolabel(num_buckets=1, alpha=1.0)
    strategy.on_epoch_end(_epoch_context(model, strategy, tmp_path))
    assert torch.allclose(strategy.values, torch.full((1, 1), 1 - 0.45), atol=1e-6)
    strong = _autolabel(num_buckets=1, alpha=2.0)  # 1 - 0.9 = 0.1 is below Acc = 0.5: clipped up to 0.5
    strong.on_epoch_end(_epoch_context(model, strong, tmp_path))
    assert torch.allclose(strong.values, torch.full((1, 1), 0.5), atol=1e-6)
    # four buckets, always wrong at confidence 0.95: every bucket moves to 1 - 0.95 (>= Acc = 0)
    wrong = FixedConfidenceModel(confidence=0.95, correct_every=10**9)
    many = _autolabel(num_buckets=4, alpha=1.0)
    many.on_epoch_end(_epoch_context(AlwaysWrong(wrong), many, tmp_path))
    assert torch.allclose(many.values, torch.full((1, 4), 0.05), atol=1e-6)
    assert (tmp_path / "autolabel.csv").is_file() and (tmp_path / "autolabel.png").is_file()


class AlwaysWrong(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    @property
    def current(self):
        return self.inner.current

    @current.setter
    def current(self, value):
        labels, index = value
        self.inner.current = (labels, torch.ones_like(index))  # odd index: always the wrong class

    def forward(self, x):
        return self.inner(x)


def test_underconfident_model_moves_values_up_and_clips_at_one(tmp_path):
    # one bucket, accuracy 0.5 at confidence 0.3: ECE 0.2, under-confident -> t rises by alpha * 0.2
    model = FixedConfidenceModel(confidence=0.3)
    strategy = _autolabel(num_buckets=1, alpha=0.1, init=0.6)
    strategy.on_epoch_end(_epoch_context(model, strategy, tmp_path))
    assert torch.allclose(strategy.values, torch.full((1, 1), 0.6 + 0.1 * 0.2), atol=1e-6)
    strategy.alpha = 5.0  # 0.62 + 1.0 is clipped to 1
    strategy.on_epoch_end(_epoch_context(model, strategy, tmp_path))
    assert torch.allclose(strategy.values, torch.ones(1, 1))
    assert len(strategy.history) == 2
    # always right at confidence 0.3: the lower clip Acc = 1 lifts every bucket to 1 at once
    always = FixedConfidenceModel(confidence=0.3, correct_every=1)
    many = _autolabel(num_buckets=3, alpha=0.1, init=0.6)
    many.on_epoch_end(_epoch_context(always, many, tmp_path))
    assert torch.allclose(many.values, torch.ones(1, 3))


def test_update_rule_on_hand_built_statistics():
    strategy = _autolabel(num_buckets=2, alpha=1.0)
    stats = torch.zeros(2, 3, 15, dtype=torch.float64)
    # bucket 1: 10 samples at confidence 0.9 (bin 13), 6 correct -> ECE 0.3, over-confident
    stats[0, :, 13] = torch.tensor([10, 9.0, 6])
    # bucket 2: empty -> unchanged
    details = strategy.update_from_statistics(stats)
    assert strategy.values[0, 0].item() == pytest.approx(0.7)
    assert strategy.values[0, 1].item() == 1.0
    assert details["ece"][0].item() == pytest.approx(0.3)


def test_state_dict_round_trip(tmp_path):
    a = _autolabel(num_buckets=3)
    a.values.copy_(torch.tensor([[0.9, 0.8, 0.7]]))
    a.history = [[[1.0, 1.0, 1.0]], [[0.9, 0.8, 0.7]]]
    path = tmp_path / "s.pt"
    torch.save(a.state_dict(), path)
    b = _autolabel(num_buckets=3)
    b.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(a.values, b.values) and b.history == a.history


@pytest.mark.parametrize("params", [{"num_buckets": 0}, {"num_buckets": 2.5}, {"alpha": 0.0}, {"init": 1.5}])
def test_invalid_parameters(params):
    with pytest.raises(ConfigError):
        LABEL_STRATEGIES.build("autolabel", **params)


def test_augmentation_without_distance_is_refused_at_configuration():
    with pytest.raises(ConfigError, match="cannot"):
        LABEL_STRATEGIES.build("autolabel").bind(AUGMENTATIONS.build("standard"))


def test_resumed_run_continues_the_same_trajectory(digits_config, tmp_path):
    from auglabel.engine.config import ComponentConfig
    from auglabel.engine.trainer import Trainer

    def config():
        cfg = digits_config(epochs=3)
        cfg.augment = ComponentConfig("gaussian_noise", {"sigma_max": 0.5})
        cfg.labels = ComponentConfig("autolabel", {"num_buckets": 4, "init": 0.9, "alpha": 0.05})
        return cfg

    straight = Trainer(config(), tmp_path / "straight", progress=False)
    straight.fit()
    assert not torch.equal(straight.step.labels.values, torch.full((1, 4), 0.9))  # it learned something
    Trainer(config(), tmp_path / "resumed", progress=False).run_epoch(1)  # then "interrupted"
    resumed = Trainer(config(), tmp_path / "resumed", resume=True, progress=False)
    resumed.fit()
    assert torch.allclose(straight.step.labels.values, resumed.step.labels.values, atol=1e-6)
    assert len(resumed.step.labels.history) == 3


def test_augmix_can_be_driven_at_a_distance_and_depth():
    augmix = AUGMENTATIONS.build("augmix", width=1, jsd=False, mix="uniform")
    assert augmix.supports_distance_control() and augmix.bucket_groups == 3
    g = torch.Generator().manual_seed(0)
    n = 12
    batch = Batch(torch.rand(n, 1, 10, 10, generator=g), torch.arange(n) % 3, torch.arange(n), 3)
    distance = torch.linspace(0, 1, n)
    group = torch.arange(n) % 3
    out = augmix.apply_at_distance(batch, distance, generator=g, group=group)
    assert torch.allclose(out.info["distance"], distance, atol=1e-6)
    assert torch.equal(out.info["group"], group) and torch.equal(out.info["depths"][:, 0], group + 1)
    assert torch.equal(out.labels, batch.labels)
    assert torch.allclose(out.inputs[0], batch.inputs[0])  # distance 0: the clean image itself
    # training batches report the same axes, so their rows land in the matching buckets
    trained = augmix(batch, generator=g)
    assert torch.allclose(trained.info["distance"], 1 - trained.info["mix_weight"])
    assert torch.equal(trained.info["group"], trained.info["depth"] - 1)


def test_augmix_autolabel_trains_on_digits(digits_config, tmp_path):
    from auglabel.engine.config import ComponentConfig
    from auglabel.engine.trainer import Trainer

    cfg = digits_config(epochs=2)
    cfg.augment = ComponentConfig("augmix", {"width": 1, "jsd": False, "mix": "uniform"})
    cfg.labels = ComponentConfig("autolabel", {"num_buckets": 5})
    trainer = Trainer(cfg, tmp_path / "augmix", progress=False)
    trainer.fit()
    values = trainer.step.labels.values
    assert values.shape == (3, 5)
    assert ((values >= 0) & (values <= 1)).all()
    rows = (tmp_path / "augmix" / "autolabel.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 * 15  # header + epochs x buckets
