"""AutoDO components (METHODS.md sec. 7): initial values by hand, the losses against torch oracles, per-sample
and shared tables indexed by batch.index, the tables outside the run's optimiser, the hyper step finding flipped
labels on a toy problem, a distorted run with plots, resume = uninterrupted run, one-line config errors."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.autodo.hyper import HyperSettings, hyper_pass
from auglabel.autodo.optim import RowRMSprop, RowSGD
from auglabel.batch import Batch
from auglabel.data.loader import DeviceLoader
from auglabel.engine.config import ComponentConfig
from auglabel.engine.step import ComponentSpec, TrainingStep
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES
from auglabel.models import Classifier

K = 10


def _spec(n=20, labels=None, k=K):
    labels = torch.arange(n) % k if labels is None else labels
    return ComponentSpec(num_classes=k, feature_dim=8, input_shape=(1, 6, 6), dataset_size=n, train_size=n, labels=labels)


def _components(augment_params=None, label_params=None, spec=None):
    augment = AUGMENTATIONS.build("autodo", **(augment_params or {}))
    labels = LABEL_STRATEGIES.build("autodo", **(label_params or {}))
    labels.bind(augment)
    spec = spec or _spec()
    augment.setup(spec)
    labels.setup(spec)
    return augment, labels


def test_initial_weights_soft_labels_and_augmentation_hyperparameters():
    augment, labels = _components()
    index = torch.tensor([3, 0, 17])
    weights = 1.4427 * F.softplus(labels.weights.lookup(index).flatten())
    torch.testing.assert_close(weights, torch.ones(3), atol=1e-4, rtol=0)  # 1 at init
    soft = torch.softmax(labels.soft.lookup(index), 1)
    expected = torch.full((3, K), 0.005)
    expected[torch.arange(3), index % K] = 0.955  # (1 - 0.05) y + 0.05 / 10
    torch.testing.assert_close(soft, expected, atol=1e-6, rtol=0)
    assert labels.soft.values.shape == (20, K) and labels.weights.values.shape == (20, 1)
    torch.testing.assert_close(torch.sigmoid(augment.probability.values), torch.full((20, 4), 0.25))
    torch.testing.assert_close(torch.sigmoid(augment.magnitude.values), torch.full((20, 4), 0.5))
    assert all(not p.requires_grad for p in labels.hyper_parameters() + augment.hyper_parameters())
    shared, _ = _components({"shared": True})
    assert shared.probability.values.shape == (1, 4)


def _batch(n=4, seed=0, index=None):
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(n) if index is None else index
    return Batch(torch.rand(n, 1, 6, 6, generator=g), index % K, index, K)


def test_losses_against_torch_oracles():
    _, labels = _components()
    batch = _batch(index=torch.tensor([1, 4, 7, 12]))
    logits = torch.randn(4, K, generator=torch.Generator().manual_seed(1))
    labels.weights.values.data[batch.index] = torch.tensor([[0.5], [-1.0], [0.0], [2.0]])
    labels.soft.values.data[batch.index] += torch.randn(4, K, generator=torch.Generator().manual_seed(2))
    s_logits = labels.soft.values[batch.index]
    log_p, log_s = F.log_softmax(logits, 1), F.log_softmax(s_logits, 1)
    kl_sp = F.kl_div(log_p, log_s, reduction="none", log_target=True).sum(1)  # KL(s || p)
    kl_ps = F.kl_div(log_s, log_p, reduction="none", log_target=True).sum(1)  # KL(p || s)
    w = F.softplus(torch.tensor([0.5, -1.0, 0.0, 2.0])) / math.log(2)
    torch.testing.assert_close(labels.loss(logits, batch), (w * 0.5 * (kl_sp + kl_ps)).mean())
    _, asym = _components(label_params={"symmetric": False, "weights": False})
    asym.soft.values.data.copy_(labels.soft.values.data)
    torch.testing.assert_close(asym.loss(logits, batch), kl_sp.mean())
    _, hard = _components(label_params={"soft_labels": False})
    hard.weights.values.data.copy_(labels.weights.values.data)
    torch.testing.assert_close(hard.loss(logits, batch), (w * F.cross_entropy(logits, batch.labels, reduction="none")).mean())
    _, plain = _components(label_params={"soft_labels": False, "weights": False})
    torch.testing.assert_close(plain.loss(logits, batch), F.cross_entropy(logits, batch.labels))
    assert plain.hyper_parameters() == [] and plain.optimizer is not None  # still optimises the augmentation


def test_augmentation_reads_each_samples_row_and_is_seeded():
    augment, _ = _components()
    batch = _batch(n=6)
    out = augment(batch, generator=torch.Generator().manual_seed(0))
    again = augment(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.inputs, again.inputs) and out.info["autodo_applied"].shape == (6, 4)
    other = augment(batch, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(out.inputs, other.inputs)
    augment.probability.values.data[2] = -30.0  # index 2 never augmented, index 4 always with every op
    augment.probability.values.data[4] = 30.0
    out = augment(batch, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out.inputs[2], batch.inputs[2], atol=1e-5, rtol=0)  # identity warp
    assert not out.info["autodo_applied"][2].any()
    assert out.info["autodo_applied"][4].all() and not torch.equal(out.inputs[4], batch.inputs[4])
    assert (out.info["autodo_params"][:, 0].abs() <= 30).all() and (out.info["autodo_params"][:, 1:3].abs() <= 0.45).all()
    shared, _ = _components({"shared": True})
    shared.probability.values.data[:] = -30.0
    torch.testing.assert_close(shared(batch, generator=torch.Generator().manual_seed(0)).inputs, batch.inputs,
                               atol=1e-5, rtol=0)


def test_tables_stay_out_of_the_runs_optimiser_and_the_training_backward(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment, cfg.labels = ComponentConfig("autodo"), ComponentConfig("autodo", {"hyper_start": 5})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    tables = trainer.step.hyper_parameters()
    assert len(tables) == 4 and tables[0] is trainer.step.augment.probability.values
    in_sgd = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not in_sgd & {id(p) for p in tables}
    assert in_sgd == {id(p) for p in trainer.step.parameters()} - {id(p) for p in tables}
    before = [t.detach().clone() for t in tables]
    trainer.run_epoch(1)  # no hyper pass before E: the tables do not move
    assert all(torch.equal(a, b) for a, b in zip(before, tables))
    with pytest.raises(ConfigError, match="labels: autodo"):
        TrainingStep(nn.Linear(2, 2), AUGMENTATIONS.build("autodo"), LABEL_STRATEGIES.build("onehot")).setup(_spec())


def _blobs(n=240, flip=0.25, seed=0):
    """Two Gaussian classes as 1 x 2 x 2 uint8 'images'; a quarter of the training labels flipped."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.arange(n) % 2
    blobs = torch.randn(n, 1, 2, 2, generator=g) * 0.6 + (clean * 2 - 1).view(-1, 1, 1, 1) * 0.8
    images = (128 + 40 * blobs).round().clamp(0, 255).to(torch.uint8)
    noisy = clean.clone()
    flipped = torch.rand(n, generator=g) < flip
    flipped[n // 2:] = False  # the second half is the clean validation split
    noisy[flipped] = 1 - noisy[flipped]
    return images, clean, noisy, flipped


def test_the_hyper_step_lowers_the_weights_and_turns_the_soft_labels_of_flipped_samples():
    """A toy check of the whole pass: W and S learned from a clean validation split on data whose training
    labels are 25 % flipped; no augmentation (augment: none)."""
    images, clean, noisy, flipped = _blobs()
    torch.manual_seed(0)
    model = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Tanh()), 8, 2, in_channels=1, mean=0.5, std=0.16)
    train_idx, val_idx = torch.arange(120), torch.arange(120, 240)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(200):  # fit the noisy training labels for a while
        loss = F.cross_entropy(model(images[train_idx] / 255.0), noisy[train_idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    augment = AUGMENTATIONS.build("none")
    labels = LABEL_STRATEGIES.build("autodo", hyper_start=0, hyper_schedule="constant")
    labels.bind(augment)
    labels.setup(ComponentSpec(num_classes=2, feature_dim=8, input_shape=(1, 2, 2), dataset_size=240, train_size=120,
                               labels=noisy))
    loaders = [DeviceLoader(images, labels_, idx, 2, 24, train=True, seed=0) for labels_, idx in
               ((noisy, train_idx), (clean, val_idx))]
    for epoch in range(1, 9):
        context = SimpleNamespace(epoch=epoch, num_epochs=100, model=model, augment=augment, train_loader=loaders[0],
                                  val_loader=loaders[1], generator=torch.Generator().manual_seed(epoch))
        row = hyper_pass(context, labels, labels.settings, labels.optimizer)
    assert row["autodo_hyper_batches"] == 5 and row["autodo_neumann_growth"] < 1
    w = 1.4427 * F.softplus(labels.weights.values[train_idx].flatten())
    f = flipped[train_idx]
    assert w[f].mean() < 0.8 < 1.2 < w[~f].mean()
    soft = torch.softmax(labels.soft.values[train_idx], 1)
    towards_clean = soft[torch.arange(120), clean[train_idx]]
    assert towards_clean[f].mean() > 0.4  # started at 0.025 for every flipped sample
    assert towards_clean[~f].mean() > 0.95
    assert torch.equal(labels.weights.values[val_idx], torch.zeros(120, 1))  # validation rows untouched


def _distorted(digits_config, epochs=4):
    cfg = digits_config(epochs=epochs)
    cfg.data.imbalance_ratio, cfg.data.noise_ratio = 3.0, 0.2
    cfg.augment = ComponentConfig("autodo")
    cfg.labels = ComponentConfig("autodo", {"hyper_start": 1})
    return cfg


def test_a_distorted_run_learns_the_tables_plots_them_and_resumes_exactly(digits_config, tmp_path):
    straight = Trainer(_distorted(digits_config), tmp_path / "straight", progress=False)
    metrics = straight.fit()
    assert (tmp_path / "straight" / "autodo.png").stat().st_size > 10_000
    log = (tmp_path / "straight" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    lr = [row.split(",")[header.index("autodo_hyper_lr")] for row in log[1:]]
    assert lr[0] == lr[3] == "nan" and float(lr[1]) == 0.05 and 0 < float(lr[2]) < 0.05  # passes after epochs 2, 3
    assert "autodo_weight_flipped" in header and len(metrics["per_class_accuracy"]) == 10
    splits = straight.splits
    moved = straight.step.labels.weights.values[splits.train_idx].ne(0).float().mean()
    assert moved > 0.9 and torch.equal(straight.step.labels.weights.values[splits.val_idx], torch.zeros(len(splits.val_idx), 1))
    interrupted = Trainer(_distorted(digits_config), tmp_path / "resumed", progress=False)
    for epoch in (1, 2):
        interrupted.run_epoch(epoch)
    interrupted_steps = interrupted.step.labels.optimizer.steps
    del interrupted  # as if killed after epoch 2's checkpoint
    resumed = Trainer(_distorted(digits_config), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.start_epoch == 3 and resumed.step.labels.optimizer.steps == interrupted_steps > 0
    resumed_metrics = resumed.fit()
    for key, value in straight.step.state_dict().items():
        torch.testing.assert_close(resumed.step.state_dict()[key], value, atol=1e-6, rtol=0, msg=key)
    done, again = straight.step.labels.optimizer.state_dict(), resumed.step.labels.optimizer.state_dict()
    assert done["steps"] == again["steps"] == 2 * len(straight.train_loader)
    assert len(done["square_avg"]) == 4 and all(torch.allclose(a, b, atol=1e-9) for a, b in zip(done["square_avg"], again["square_avg"]))
    assert all(torch.equal(a, b) for a, b in zip(done["last"], again["last"]))
    assert resumed_metrics["accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("family, params, message", [
    ("augment", {"ops": ["rotate", "twirl"]}, "ops must be a non-empty list"),
    ("augment", {"ops": ["rotate", "rotate"]}, "twice"),
    ("augment", {"prob_init": 0.0}, "prob_init must be a number in"),
    ("augment", {"magnitude_init": 1.5}, "magnitude_init"),
    ("augment", {"temperature": 0}, "temperature must be"),
    ("augment", {"padding_mode": "wrap"}, "padding_mode must be one of"),
    ("labels", {"alpha": 0}, r"alpha must be a number in \(0, 1\)"),
    ("labels", {"weights": "yes"}, "weights must be true or false"),
    ("labels", {"hyper_start": -1}, "hyper_start must be an integer >= 0"),
    ("labels", {"neumann_steps": 1.5}, "neumann_steps must be an integer"),
    ("labels", {"neumann_alpha": 0}, "neumann_alpha must be a number > 0"),
    ("labels", {"hyper_lr": -0.1}, "hyper_lr must be a number > 0"),
    ("labels", {"hyper_optimizer": "adam"}, "hyper_optimizer must be one of"),
    ("labels", {"hyper_schedule": "step"}, "hyper_schedule must be one of"),
    ("labels", {"hyper_fraction": 0}, r"hyper_fraction must be in \(0, 1\]"),
])
def test_bad_values_are_one_line_config_errors(family, params, message):
    registry = AUGMENTATIONS if family == "augment" else LABEL_STRATEGIES
    with pytest.raises(ConfigError, match=message) as info:
        registry.build("autodo", **params)
    assert "\n" not in str(info.value)


def test_hyper_schedule_follows_epochs_after_e():
    settings = HyperSettings()
    assert settings.first_epoch(30) == 15 and not settings.due(15, 30) and settings.due(16, 30)
    assert not settings.due(30, 30)  # nothing trains after the last pass
    assert settings.lr_at(16, 30) == pytest.approx(0.05) and settings.lr_at(29, 30) < 0.005
    assert HyperSettings(schedule="constant").lr_at(29, 30) == 0.05


def test_row_wise_rmsprop_equals_torch_rmsprop_on_the_dense_gradient():
    g = torch.Generator().manual_seed(0)
    tables = [nn.Parameter(torch.randn(30, 3, generator=g), requires_grad=False),
              nn.Parameter(torch.randn(30, 1, generator=g), requires_grad=False)]
    start = [t.detach().clone() for t in tables]
    dense = [nn.Parameter(t.detach().clone()) for t in tables]
    ours, reference = RowRMSprop(tables, lr=0.05), torch.optim.RMSprop(dense, lr=0.05)
    for step in range(12):
        rows = torch.randperm(30, generator=g)[:7]
        if step == 5:
            rows = torch.tensor([2, 2, 9])  # a repeated row sums its gradients, as a dense gradient does
        grads = [torch.randn(len(rows), t.shape[1], generator=g) for t in tables]
        ours.step([(t, rows, gr) for t, gr in zip(tables, grads)])
        for d, gr in zip(dense, grads):
            d.grad = torch.zeros_like(d).index_add_(0, rows, gr)
        reference.step()
        if step == 8:  # a state round trip mid-way
            state = ours.state_dict()
            ours = RowRMSprop(tables, lr=0.05)
            ours.load_state_dict(state)
    for t, d, s in zip(tables, dense, start):
        torch.testing.assert_close(t.detach(), d.detach(), atol=1e-5, rtol=1e-5)
        assert (t - s).abs().max() > 0.1  # the tables did move
    sgd_table = nn.Parameter(torch.zeros(5, 2), requires_grad=False)
    RowSGD([sgd_table], lr=0.5).step([(sgd_table, torch.tensor([1, 1, 3]), torch.ones(3, 2))])
    assert sgd_table[1].tolist() == [-1.0, -1.0] and sgd_table[3].tolist() == [-0.5, -0.5] and sgd_table[0].abs().sum() == 0


def test_learned_summary_scalars_by_hand_and_the_plot(tmp_path):
    from auglabel.report.autodo_plots import AutoDOSummary, plot_autodo

    given, clean = torch.tensor([0, 1, 1, 0, 2]), torch.tensor([0, 1, 0, 0, 1])  # rows 2 and 4 flipped
    soft = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    summary = AutoDOSummary(given, clean, 3, weights=torch.tensor([1.0, 1.2, 0.2, 1.0, 0.4]), soft=soft,
                            ops=("rotate",), probability=torch.full((5, 1), 0.3), magnitude=torch.full((5, 1), 0.5))
    scalars = summary.scalars()
    assert scalars["autodo_weight_flipped"] == pytest.approx(0.3) and scalars["autodo_weight_clean"] == pytest.approx(16 / 15)
    assert scalars["autodo_soft_finds_clean_flipped"] == 0.5  # row 2 found class 0, row 4 kept its noisy class 2
    assert scalars["autodo_soft_agrees_given"] == pytest.approx(3 / 5) and scalars["autodo_prob_rotate"] == pytest.approx(0.3)
    assert scalars["autodo_weight_auroc"] == 1.0  # every clean weight above every flipped one
    mixed = AutoDOSummary(given, clean, 3, weights=torch.tensor([1.0, 0.3, 0.2, 1.0, 0.3]))
    # clean (1.0, 0.3, 1.0) vs flipped (0.2, 0.3): 2 + (1 + tie 1/2) + 2 of 6 pairs
    assert mixed.scalars()["autodo_weight_auroc"] == pytest.approx(5.5 / 6)
    assert plot_autodo(summary, tmp_path / "autodo.png").stat().st_size > 10_000
    bare = AutoDOSummary(given, given, 3)  # nothing learned, nothing flipped: still draws
    assert bare.scalars() == {} and plot_autodo(bare, tmp_path / "bare.png").is_file()


def test_mixing_augmentations_are_refused(digits_config, tmp_path):
    cfg = digits_config(epochs=1)
    cfg.augment, cfg.labels = ComponentConfig("mixup"), ComponentConfig("autodo")
    with pytest.raises(ConfigError, match="mixes pairs of images"):
        Trainer(cfg, tmp_path / "run", progress=False)
