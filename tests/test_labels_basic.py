"""One-hot, uniform smoothing and confidence penalty against hand computations."""
import math

import pytest
import torch

from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES


def _batch(labels, k):
    labels = torch.tensor(labels)
    return Batch(inputs=torch.zeros(len(labels), 1, 4, 4), labels=labels, index=torch.arange(len(labels)),
                 num_classes=k)


def test_onehot_targets():
    targets = LABEL_STRATEGIES.build("onehot").targets(torch.zeros(2, 3), _batch([2, 0], 3))
    assert torch.equal(targets, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_uniform_smoothing_hand_example():
    # eps = 0.2, K = 4: true class 0.8 + 0.05 = 0.85, others 0.05
    targets = LABEL_STRATEGIES.build("uniform", eps=0.2).targets(torch.zeros(1, 4), _batch([1], 4))
    assert torch.allclose(targets, torch.tensor([[0.05, 0.85, 0.05, 0.05]]))
    assert torch.allclose(targets.sum(1), torch.ones(1))


def test_uniform_smoothing_loss_matches_torch_label_smoothing():
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    batch = _batch([0, 1, 2, 3, 6], 7)
    ours = LABEL_STRATEGIES.build("uniform", eps=0.3).loss(logits, batch)
    oracle = torch.nn.functional.cross_entropy(logits, batch.labels, label_smoothing=0.3)
    assert torch.allclose(ours, oracle, atol=1e-6)


def test_confidence_penalty_hand_example():
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (0.75, 0.25)
    batch = _batch([0], 2)
    ce = -math.log(0.75)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    loss = LABEL_STRATEGIES.build("confidence_penalty", beta=0.5).loss(logits, batch)
    assert loss.item() == pytest.approx(ce - 0.5 * h, abs=1e-6)


@pytest.mark.parametrize("name,params", [("uniform", {"eps": 1.0}), ("uniform", {"eps": -0.1}),
                                         ("confidence_penalty", {"beta": -1.0}),
                                         ("uniform", {"epsilon": 0.1}), ("nope", {})])
def test_invalid_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        LABEL_STRATEGIES.build(name, **params)
