"""Pairwise Label Smoothing (METHODS.md sec. 6): targets by hand, gradient routing, the alternation of
original and pair batches, resume determinism, prediction with the main head only, errors."""
import math
import textwrap

import pytest
import torch
from torch import nn

from auglabel.augment import AUGMENTATIONS
from auglabel.augment.pairwise import PairBatches, pair_average, pair_labels
from auglabel.batch import Batch
from auglabel.cli import main
from auglabel.engine.build import model_feature_dim
from auglabel.engine.checkpoint import load_checkpoint, save_checkpoint
from auglabel.engine.config import ComponentConfig
from auglabel.engine.runs import load_run
from auglabel.engine.step import ComponentSpec, TrainingStep
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES
from auglabel.labels.pls import smoothing_bounds, smoothing_distribution
from auglabel.losses import soft_cross_entropy
from auglabel.models import Classifier

K = 3


def _spec(feature_dim=5, num_classes=K):
    return ComponentSpec(num_classes=num_classes, feature_dim=feature_dim, input_shape=(1, 2, 2),
                         dataset_size=100, train_size=80)


def _model():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.Tanh())
    return Classifier(body, 5, K, in_channels=1)


def _pls(**params):
    pls = LABEL_STRATEGIES.build("pls", **params)
    pls.setup(_spec())
    return pls


def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % K
    return Batch(torch.rand(n, 1, 2, 2, generator=g), labels, torch.arange(n), K)


# ------------------------------------------------------------------------------- targets by hand

def test_pair_average_and_pair_labels_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 0.5], [0.25, 1.0]])
    torch.testing.assert_close(pair_average(x, torch.tensor([1, 2, 0])),
                               torch.tensor([[0.5, 0.25], [0.125, 0.75], [0.625, 0.5]]))
    assert torch.equal(pair_average(x, torch.arange(3)), x)  # x_ii = x_i exactly
    q = pair_labels(torch.tensor([0, 2]), torch.tensor([1, 2]), K)
    assert torch.equal(q, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))


def test_target_and_loss_on_a_three_class_example_by_hand():
    """y_i = 0, y_j = 1 -> q = (.5, .5, 0); W_t = 0 with bias logit(.2), logit(.2), logit(.2 + ln 2) gives
    v = (.2, .2, .2 + ln 2), u = softmax(v) = (1/4, 1/4, 1/2), q' = (q + u) / 2 = (.375, .375, .25)."""
    pls = _pls()
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    with torch.no_grad():
        pls.head.weight.zero_()
        pls.head.bias.copy_(torch.tensor([logit(0.2), logit(0.2), logit(0.2 + math.log(2))]))
    batch = Batch(torch.zeros(1, 1, 2, 2), torch.tensor([0]), torch.tensor([0]), K,
                  info={"partner_label": torch.tensor([1])})
    features = torch.randn(1, 5)
    torch.testing.assert_close(pls.smoothing(features), torch.tensor([[0.25, 0.25, 0.5]]))
    targets = pls.targets(None, batch, features)
    torch.testing.assert_close(targets, torch.tensor([[0.375, 0.375, 0.25]]))
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    log_p = torch.log_softmax(logits, 1)[0]
    h_q = -(0.5 * log_p[0] + 0.5 * log_p[1])
    h_u = -(0.25 * log_p[0] + 0.25 * log_p[1] + 0.5 * log_p[2])
    torch.testing.assert_close(pls.loss(logits, batch, features), 0.5 * h_q + 0.5 * h_u)


def test_targets_are_distributions_and_u_stays_within_the_sigmoid_bounds():
    pls = _pls()
    with torch.no_grad():
        pls.head.weight.mul_(100.0)  # saturate the sigmoid
    features = torch.randn(64, 5)
    u = pls.smoothing(features)
    lo, hi = smoothing_bounds(K)
    assert hi == pytest.approx(math.e / (math.e + 2)) and lo == pytest.approx(1 / (1 + 2 * math.e))
    assert (u >= lo - 1e-6).all() and (u <= hi + 1e-6).all() and u.max() > hi - 1e-3
    batch = Batch(torch.zeros(64, 1, 2, 2), torch.randint(0, K, (64,)), torch.arange(64), K,
                  info={"partner_label": torch.randint(0, K, (64,))})
    targets = pls.targets(None, batch, features)
    torch.testing.assert_close(targets.sum(1), torch.ones(64))
    assert (targets >= 0).all()
    # Figure 4's ~0.35 (K = 10) and ~0.25 (K = 100): both pair classes at the bound
    for k, expected in ((10, 0.351), (100, 0.263)):
        u_pair = smoothing_distribution(torch.tensor([[30.0, 30.0] + [-30.0] * (k - 2)]))[0, 0]
        assert 0.25 + u_pair / 2 == pytest.approx(expected, abs=1e-3)


def test_uniform_distribution_and_weight_ablations():
    batch = Batch(torch.zeros(2, 1, 2, 2), torch.tensor([0, 2]), torch.arange(2), K,
                  info={"partner_label": torch.tensor([1, 2])})
    q = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    uniform = _pls(distribution="uniform")
    assert uniform.head is None and not uniform.needs_features and list(uniform.parameters()) == []
    torch.testing.assert_close(uniform.targets(None, batch), 0.5 * q + 0.5 / K)
    ud02 = _pls(distribution="uniform", weight=0.2)
    torch.testing.assert_close(ud02.targets(None, batch), 0.8 * q + 0.2 / K)
    none = _pls(weight=0.0)
    assert none.head is None and torch.equal(none.targets(None, batch), q)


# ------------------------------------------------------------------------------- gradient routing

def _grads(term, params):
    return [None if g is None else g.detach().clone()
            for g in torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)]


def _nonzero(grads):
    return all(g is not None and g.abs().sum() > 0 for g in grads)


def _none(grads):
    return all(g is None for g in grads)


@pytest.mark.parametrize("detach_features", [False, True])
def test_which_term_sends_gradient_where(detach_features):
    """H(q, p): body + W_l, never W_t.  H(u, p) through p: body + W_l.  H(u, p) through u: W_t, and the
    body unless detach_features.  The PLS loss's gradient is exactly the sum of these."""
    model, pls = _model(), _pls(detach_features=detach_features)
    batch = pls.prepare(_batch(), generator=torch.Generator().manual_seed(1), step=1)
    assert batch.info["paired"].all()
    logits, features = model(batch.inputs, return_features=True)
    body, head, w_t = list(model.body.parameters()), list(model.head.parameters()), list(pls.head.parameters())
    params = body + head + w_t
    q = pair_labels(batch.labels, batch.info["partner_label"], K)
    u = pls.smoothing(features)
    g_q = _grads(soft_cross_entropy(logits, q).mean(), params)
    g_u_via_p = _grads(soft_cross_entropy(logits, u.detach()).mean(), params)
    g_u_via_u = _grads(soft_cross_entropy(logits.detach(), u).mean(), params)
    nb, nh = len(body), len(head)
    split = lambda g: (g[:nb], g[nb:nb + nh], g[nb + nh:])  # noqa: E731
    body_q, head_q, wt_q = split(g_q)
    assert _nonzero(body_q) and _nonzero(head_q) and _none(wt_q)
    body_p, head_p, wt_p = split(g_u_via_p)
    assert _nonzero(body_p) and _nonzero(head_p) and _none(wt_p)
    body_u, head_u, wt_u = split(g_u_via_u)
    assert _nonzero(wt_u) and _none(head_u)
    assert _none(body_u) if detach_features else _nonzero(body_u)
    total = _grads(pls.loss(logits, batch, features), params)
    for got, parts in zip(total, zip(g_q, g_u_via_p, g_u_via_u)):
        expected = sum(0.5 * g for g in parts if g is not None)
        torch.testing.assert_close(got, expected)


def test_the_learned_head_moves_u_towards_the_likely_classes_up_to_the_bound():
    """Only the u-path trains W_t: on fixed features and predictions it concentrates u on the likely class,
    up to the sigmoid's bound (with two likely classes it would spread over both)."""
    pls = _pls()
    features = torch.randn(4, 5)  # 4 points in 5 dimensions: any targets are reachable by a linear head
    logits = 8.0 * torch.eye(K)[torch.tensor([0, 2, 1, 2])]  # one clearly likely class per row
    opt = torch.optim.SGD(pls.head.parameters(), lr=5.0)
    for _ in range(300):
        loss = soft_cross_entropy(logits, pls.smoothing(features)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    u = pls.smoothing(features).detach()
    assert torch.equal(u.argmax(1), logits.argmax(1))
    assert u.max(1).values.min() > 0.9 * smoothing_bounds(K)[1]


# ------------------------------------------------------------------------------- alternation

def test_alternation_sequence_is_a_function_of_the_step():
    batch = _batch()
    pairing = PairBatches(original_batches=True)
    kinds = [pairing(batch, generator=torch.Generator().manual_seed(0), step=s).info["paired"].all().item()
             for s in range(6)]
    assert kinds == [False, True, False, True, False, True]
    original = pairing(batch, generator=torch.Generator(), step=4)
    assert torch.equal(original.inputs, batch.inputs) and torch.equal(original.info["partner"], torch.arange(6))
    pairs = pairing(batch, generator=torch.Generator().manual_seed(0), step=5)
    partner = pairs.info["partner"]
    assert (partner != torch.arange(6)).all() and torch.equal(partner.sort().values, torch.arange(6))
    torch.testing.assert_close(pairs.inputs, (batch.inputs + batch.inputs[partner]) / 2)
    assert torch.equal(pairs.info["partner_label"], batch.labels[partner])
    always = PairBatches(original_batches=False)
    assert all(always.is_pair_step(s) for s in range(6))


def test_training_step_hands_its_counter_to_the_alternation():
    model, pls = _model(), _pls()
    step = TrainingStep(model, AUGMENTATIONS.build("none"), pls)
    generator = torch.Generator().manual_seed(0)
    seen = [step(_batch(), generator)[2].info["paired"].all().item() for _ in range(4)]
    assert seen == [False, True, False, True] and step.steps_done == 4
    step.eval()
    step(_batch(), generator)
    assert step.steps_done == 4  # only training forwards count


# ------------------------------------------------------------------------------- through the trainer

def _pls_config(digits_config, epochs=2, **params):
    cfg = digits_config(epochs=epochs)  # 1150 training digits in batches of 64: 17 steps, an odd number
    cfg.labels = ComponentConfig("pls", params)
    return cfg


def _all_params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.step.parameters()])


def test_resume_after_an_odd_number_of_steps_continues_the_sequence(digits_config, tmp_path):
    straight = Trainer(_pls_config(digits_config), tmp_path / "straight", progress=False)
    assert len(straight.train_loader) % 2 == 1
    straight.fit()
    Trainer(_pls_config(digits_config), tmp_path / "resumed", progress=False).run_epoch(1)  # "interrupted"
    path = tmp_path / "resumed" / "checkpoint.pt"
    state = load_checkpoint(path)
    assert int(state["step"]["step_count"]) == 17 and "labels.head.weight" in state["step"]
    resumed = Trainer(_pls_config(digits_config), tmp_path / "resumed", resume=True, progress=False)
    assert resumed.step.steps_done == 17  # epoch 2 starts with a pair batch
    resumed.fit()
    assert resumed.step.steps_done == straight.step.steps_done == 34
    torch.testing.assert_close(_all_params(resumed), _all_params(straight), atol=1e-6, rtol=0)
    # the counter is what made this work: restarting the sequence at 0 gives another run
    state["step"]["step_count"] = torch.tensor(0)
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, path)
    wrong = Trainer(_pls_config(digits_config), tmp_path / "resumed", resume=True, progress=False)
    wrong.fit()
    assert not torch.allclose(_all_params(wrong), _all_params(straight), atol=1e-4)


def test_prediction_uses_the_main_head_only(digits_config, tmp_path):
    trainer = Trainer(_pls_config(digits_config, epochs=1), tmp_path / "run", progress=False)
    trainer.fit()
    model = trainer.model
    assert not any(name.startswith("labels") for name in model.state_dict())
    x = torch.rand(4, 1, 8, 8)
    model.eval()
    logits, features = model(x, return_features=True)
    torch.testing.assert_close(model(x), model.head(features))
    assert logits.shape == (4, 10)
    loaded = load_run(tmp_path / "run")  # evaluate / calibrate rebuild the step, W_t included
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[key], value)


def test_head_weight_decay_gets_its_own_group(digits_config, tmp_path):
    trainer = Trainer(_pls_config(digits_config, epochs=1, head_weight_decay=0.0), tmp_path / "run", progress=False)
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2 and groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 5e-4
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.step.labels.head.parameters()}
    default = Trainer(_pls_config(digits_config, epochs=1), tmp_path / "default", progress=False)
    assert len(default.optimizer.param_groups) == 1  # the paper decays W_t like every other weight


# ------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("name, params, reason", [
    ("mixup", {}, "already mixes pairs"),
    ("cutmix", {}, "already mixes pairs"),
    ("pgd", {"eps": 0.03, "steps": 1}, "runs the model"),
    ("fgsm", {"eps": 0.03}, "runs the model"),
    ("augmix", {"jsd": True}, "3 views"),
])
def test_augmentations_pls_cannot_follow_are_config_errors(digits_config, tmp_path, name, params, reason):
    cfg = _pls_config(digits_config)
    cfg.augment = ComponentConfig(name, params)
    with pytest.raises(ConfigError, match=reason) as info:
        Trainer(cfg, tmp_path / "run", progress=False)
    assert "pls pairs images itself" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name, params", [("none", {}), ("standard", {}), ("gaussian_noise", {}),
                                          ("augmix", {"jsd": False})])
def test_per_image_augmentations_are_accepted(digits_config, tmp_path, name, params):
    cfg = _pls_config(digits_config)
    cfg.augment = ComponentConfig(name, params)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    if name == "standard":
        assert trainer.train_epoch(1)["train_loss"] > 0


def test_cli_reports_a_rejected_pairing_in_one_line(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("data: {name: digits, val_size: 0.2}\naugment: {name: mixup}\nlabels: {name: pls}\n"
                      "train: {epochs: 1, device: cpu}\n")
    assert main(["train", str(config), "--run_dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("auglabel: error: pls pairs images itself") and len(err.splitlines()) == 1


def test_a_model_without_features_is_a_config_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, K))  # its forward takes no return_features
    assert model_feature_dim(model, (1, 2, 2)) is None
    step = TrainingStep(model, AUGMENTATIONS.build("none"), LABEL_STRATEGIES.build("pls"))
    with pytest.raises(ConfigError, match="pls needs the model's penultimate features, but Sequential exposes none"):
        step.setup(ComponentSpec(num_classes=K, feature_dim=None, input_shape=(1, 2, 2), dataset_size=4,
                                 train_size=4, model_name="Sequential"))
    LABEL_STRATEGIES.build("pls", distribution="uniform").setup(_spec(feature_dim=None))  # needs none


def test_a_custom_model_without_return_features_trains_with_its_last_linear(digits_config, tmp_path):
    (tmp_path / "tiny_pls_model.py").write_text(textwrap.dedent("""
        from torch import nn

        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 6, 3)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(6, 10)

            def forward(self, x):
                return self.fc(self.pool(self.conv(x)).flatten(1))
    """))
    cfg = _pls_config(digits_config, epochs=1)
    cfg.model = ComponentConfig("custom", {"class_path": f"{tmp_path}/tiny_pls_model.py:Tiny"})
    from auglabel.models.custom import allow_modules

    with allow_modules(f"{tmp_path}/"):  # the user's own file
        trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.step.labels.head.in_features == 6
    assert trainer.train_epoch(1)["train_loss"] > 0


@pytest.mark.parametrize("params, message", [
    ({"distribution": "gaussian"}, "distribution must be one of learned, uniform"),
    ({"weight": 1.0}, r"weight must be a number in \[0, 1\)"),
    ({"weight": -0.1}, "weight must be"),
    ({"head_weight_decay": -1}, "head_weight_decay must be"),
    ({"bogus": 1}, "unexpected keyword"),
])
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        LABEL_STRATEGIES.build("pls", **params)
