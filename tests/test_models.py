"""Models: shapes, features, parameter counts vs. published numbers, normalisation, custom
wrapping, bad configuration, determinism.  Oracles are hand-written functional forwards,
hand-counted parameters and the numbers printed in the papers."""
from __future__ import annotations

import copy
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auglabel.errors import ConfigError, DataError
from auglabel.models import MODELS, Classifier, build_model, wrap_module
from auglabel.models.custom import allow_modules
from auglabel.models.preact_resnet import PreActBlock
from auglabel.models.wide_resnet import WideBasicBlock

SMALL_CONFIGS = {  # cheap variants of every registered architecture
    "small_cnn": {},
    "small_cnn_nonorm": {"norm": "none"},
    "preact_resnet18": {"width": 8},
    "wide_resnet": {"depth": 10, "width": 1, "dropout": 0.3},
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_small(key: str, in_channels: int, num_classes: int = 10, **kw) -> nn.Module:
    name = "small_cnn" if key.startswith("small_cnn") else key
    return build_model(name, in_channels=in_channels, num_classes=num_classes, **SMALL_CONFIGS[key], **kw)


@pytest.mark.parametrize("key", SMALL_CONFIGS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 20, 20)])
def test_shapes_and_features_feed_the_head(key, shape):
    torch.manual_seed(0)
    model = build_small(key, shape[0], num_classes=7).eval()
    assert isinstance(model, Classifier) and model.num_classes == 7
    x = torch.rand(3, *shape)
    logits, features = model(x, return_features=True)
    assert logits.shape == (3, 7) and features.shape == (3, model.feature_dim)
    torch.testing.assert_close(model.head(features), logits)
    torch.testing.assert_close(model(x), logits)


def test_full_size_preact_resnet18_forward_shape():
    model = build_model("preact_resnet18", in_channels=3, num_classes=10).eval()
    logits, features = model(torch.rand(2, 3, 20, 20), return_features=True)
    assert logits.shape == (2, 10) and features.shape == (2, 512)


def test_small_cnn_parameter_count_matches_hand_count():
    model = build_model("small_cnn", in_channels=1, num_classes=10)
    w = 32
    convs = 9 * (1 * w + w * 2 * w + 2 * (2 * w) ** 2)  # bias-free 3x3 convolutions
    batchnorms = 2 * (w + 3 * 2 * w)
    head = 2 * w * 10 + 10
    assert n_params(model) == convs + batchnorms + head
    assert 90_000 <= n_params(model) <= 120_000


def test_small_cnn_matches_functional_reference():
    """Eval-mode forward written out with torch.nn.functional (plain NCHW layout)."""
    torch.manual_seed(1)
    model = build_model("small_cnn", in_channels=3, num_classes=5, mean=[0.4, 0.5, 0.6], std=0.2)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):  # non-trivial stats
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def unit(h, i):
        h = F.conv2d(h, convs[i].weight, padding=1)
        h = F.batch_norm(h, bns[i].running_mean, bns[i].running_var, bns[i].weight, bns[i].bias, eps=bns[i].eps)
        return F.relu(h)

    x = torch.rand(4, 3, 16, 16)
    h = (x - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / 0.2
    h = F.max_pool2d(unit(h, 0), 2)
    h = F.max_pool2d(unit(h, 1), 2)
    h = unit(unit(h, 2), 3).mean(dim=(2, 3))
    expected = h @ model.head.weight.T + model.head.bias
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)


def test_preact_block_computes_pre_activation_residual():
    torch.manual_seed(2)
    block = PreActBlock(4, 4, stride=1).eval()
    x = torch.randn(2, 4, 6, 6)
    r1 = F.relu(block.bn1(x))
    expected = x + block.conv2(F.relu(block.bn2(block.conv1(r1))))
    torch.testing.assert_close(block(x), expected)
    down = PreActBlock(4, 8, stride=2).eval()
    r1 = F.relu(down.bn1(x))
    expected = down.shortcut(r1) + down.conv2(F.relu(down.bn2(down.conv1(r1))))
    torch.testing.assert_close(down(x), expected)
    assert down(x).shape == (2, 8, 3, 3)


def test_preact_resnet18_size_and_depth():
    model = build_model("preact_resnet18", in_channels=3, num_classes=10)
    assert 11.1e6 <= n_params(model) <= 11.25e6  # 11.2M (He et al. 2016 / PLS paper setting)
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) + 1 == 18  # 17 3x3 convolutions + the linear layer
    assert model.feature_dim == 512


@pytest.mark.parametrize("depth,width,published_millions", [(16, 4, 2.7), (40, 2, 2.2), (28, 10, 36.5)])
def test_wide_resnet_sizes_match_published(depth, width, published_millions):
    model = build_model("wide_resnet", in_channels=3, num_classes=10, depth=depth, width=width)
    assert round(n_params(model) / 1e6, 1) == published_millions
    convs3 = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3) == depth - 3  # stem + 2 per block (6n); depth counts 3 shortcuts + linear
    assert model.feature_dim == 64 * width


def test_wide_block_and_dropout():
    torch.manual_seed(3)
    block = WideBasicBlock(4, 4, stride=1, dropout=0.5).eval()
    x = torch.randn(2, 4, 5, 5)
    expected = x + block.conv2(F.relu(block.bn2(block.conv1(F.relu(block.bn1(x))))))
    torch.testing.assert_close(block(x), expected)  # dropout is off in eval mode
    down = WideBasicBlock(4, 8, stride=2, dropout=0.0).eval()
    r1 = F.relu(down.bn1(x))  # the projection shortcut sees the pre-activated input
    expected = down.shortcut(r1) + down.conv2(F.relu(down.bn2(down.conv1(r1))))
    torch.testing.assert_close(down(x), expected)
    block.train()
    assert not torch.allclose(block(x), block(x))


def test_normalisation_uses_given_statistics():
    mean, std = [0.2, 0.5, 0.7], [0.1, 0.25, 0.5]
    model = build_model("small_cnn", in_channels=3, num_classes=10, mean=mean, std=std).eval()
    seen = []
    model.body.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    mean_image = torch.tensor(mean).view(1, 3, 1, 1).expand(2, 3, 5, 5)
    model(mean_image)
    torch.testing.assert_close(seen[0], torch.zeros(2, 3, 5, 5))
    x = torch.rand(2, 3, 5, 5)
    model(x)
    expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[1], expected)
    state = model.state_dict()  # statistics travel with checkpoints
    torch.testing.assert_close(state["normalize.std"].flatten(), torch.tensor(std))


def test_no_statistics_means_identity_and_scalar_broadcasts():
    model = build_model("small_cnn", in_channels=3, num_classes=10)
    x = torch.rand(2, 3, 6, 6)
    torch.testing.assert_close(model.normalize(x), x)
    model = build_model("small_cnn", in_channels=3, num_classes=10, mean=0.5, std=[0.25])
    torch.testing.assert_close(model.normalize(x), (x - 0.5) / 0.25)


def test_wrong_input_is_a_data_error():
    model = build_model("small_cnn", in_channels=1, num_classes=10)
    with pytest.raises(DataError, match="1, H, W"):
        model(torch.rand(2, 3, 8, 8))
    with pytest.raises(DataError, match="float"):
        model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))


def test_init_is_deterministic_under_seed():
    def state(seed, key):
        torch.manual_seed(seed)
        return build_small(key, 3).state_dict()

    for key in SMALL_CONFIGS:
        a, b, c = state(0, key), state(0, key), state(1, key)
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_small_cnn_learns_a_fixed_batch(norm):
    torch.manual_seed(0)
    model = build_model("small_cnn", in_channels=1, num_classes=4, width=8, norm=norm, mean=0.5, std=0.25)
    y = torch.arange(32) % 4
    x = 0.5 * torch.rand(4, 1, 8, 8)[y] + 0.5 * torch.rand(32, 1, 8, 8)  # class pattern + noise
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first


# ---------------------------------------------------------------- custom models

def plain_mlp(in_features: int = 12, num_classes: int = 3) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, 8), nn.ReLU(), nn.Linear(8, num_classes))


def test_wrap_plain_module_captures_last_linear_input():
    torch.manual_seed(4)
    mlp = plain_mlp()
    model = wrap_module(mlp, 3, mean=[0.5, 0.25, 0.0], std=[0.5, 0.5, 2.0])
    assert model.in_channels == 3 and model.feature_dim == 8 and model.head is mlp[3]
    x = torch.rand(5, 3, 2, 2)
    z = ((x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 2.0]).view(1, 3, 1, 1))
    expected_features = F.relu(mlp[1](z.flatten(1)))
    logits, features = model(x, return_features=True)
    torch.testing.assert_close(features, expected_features)
    torch.testing.assert_close(logits, mlp(z))
    torch.testing.assert_close(model.head(features), logits)
    clone = copy.deepcopy(model)  # hooks must follow the copy (EMA / SWA copies)
    clone.module[3].bias.data.add_(1.0)
    logits2, features2 = clone(x, return_features=True)
    torch.testing.assert_close(features2, expected_features)
    torch.testing.assert_close(logits2, logits + 1.0)


class NativeFeatures(nn.Module):
    """A user model that already returns features."""

    def __init__(self, num_classes: int = 4):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(6, num_classes)

    def forward(self, x, return_features=False):
        features = self.body(x)
        logits = self.head(features)
        return (logits, features) if return_features else logits


def test_wrap_module_with_native_features_is_used_as_is():
    inner = NativeFeatures()
    model = wrap_module(inner, 4)
    assert model.in_channels == 3 and model.feature_dim == 6 and model.head is inner.head
    x = torch.rand(2, 3, 7, 7)
    logits, features = model(x, return_features=True)
    torch.testing.assert_close(features, inner.body(x))
    torch.testing.assert_close(logits, inner(x))


def test_build_custom_from_file_and_from_module_path(tmp_path, monkeypatch):
    source = textwrap.dedent("""
        from torch import nn

        class Tiny(nn.Module):
            def __init__(self, hidden, classes):
                super().__init__()
                self.conv = nn.Conv2d(1, hidden, 3)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(hidden, classes)

            def forward(self, x):
                return self.fc(self.pool(self.conv(x)).flatten(1))
    """)
    (tmp_path / "user_models_for_test.py").write_text(source)
    for class_path in (f"{tmp_path}/user_models_for_test.py:Tiny", "user_models_for_test.Tiny"):
        monkeypatch.syspath_prepend(str(tmp_path))
        with allow_modules(f"{tmp_path}/", "user_models_for_test"):  # the user's own code: allowed by the user
            model = build_model("custom", in_channels=1, num_classes=5, mean=[0.5], std=[0.5],
                                class_path=class_path, init_args={"hidden": 6, "classes": 5})
        assert type(model.module).__name__ == "Tiny" and model.feature_dim == 6
        x = torch.rand(2, 1, 9, 9)
        logits, features = model(x, return_features=True)
        inner = model.module
        torch.testing.assert_close(features, inner.pool(inner.conv((x - 0.5) / 0.5)).flatten(1))
        torch.testing.assert_close(inner.fc(features), logits)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_custom_import_errors_are_config_errors(tmp_path):
    broken = write(tmp_path, "broken.py", "def oops(:\n")
    no_linear = write(tmp_path, "nolinear.py", """
        from torch import nn
        class ConvOnly(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(1, 2, 3)
        def make():
            return nn.Sequential(nn.Conv2d(1, 2, 3))
        NOT_CALLABLE = 3
        class NotAModule(nn.Module):
            def __new__(cls):
                return 42
    """)
    cases = {
        "torch.nn.NoSuchLayer": "no attribute",
        "JustAName": "class_path must be",
        f"{tmp_path}/missing.py:Model": "no such file",
        f"{broken}:oops": "SyntaxError",
        f"{no_linear}:ConvOnly": "no nn.Linear",
        f"{no_linear}:make": "is a function, not a class",
        f"{no_linear}:NOT_CALLABLE": "is an object of type int, not a class",
        f"{no_linear}:NotAModule": "returned int, not an nn.Module",
    }
    with allow_modules(f"{tmp_path}/", "nonexistent_pkg_xyz"):
        with pytest.raises(ConfigError, match="cannot import module"):
            build_model("custom", in_channels=1, num_classes=2, class_path="nonexistent_pkg_xyz.Model")
        for class_path, message in cases.items():
            with pytest.raises(ConfigError, match=message):
                build_model("custom", in_channels=1, num_classes=2, class_path=class_path)
    with pytest.raises(ConfigError, match="nonexistent_pkg_xyz.*is not allowed"):  # the block has ended
        build_model("custom", in_channels=1, num_classes=2, class_path="nonexistent_pkg_xyz.Model")
    with pytest.raises(ConfigError, match="unexpected keyword"):
        build_model("custom", in_channels=1, num_classes=2, class_path="torch.nn.Linear",
                    init_args={"in_features": 2, "out_features": 2, "bogus": 1})
    with pytest.raises(ConfigError, match="construction failed: RuntimeError"):
        build_model("custom", in_channels=1, num_classes=2, class_path="torch.nn.Linear",
                    init_args={"in_features": -2, "out_features": 2})
    with pytest.raises(ConfigError, match="mapping"):
        build_model("custom", in_channels=1, num_classes=2, class_path="torch.nn.Linear", init_args=[1])
    with pytest.raises(ConfigError, match="has 3 outputs but the data has 2 classes"):
        wrap_module(plain_mlp(num_classes=3), 2, in_channels=3)
    with pytest.raises(ConfigError, match="in_channels"):
        wrap_module(plain_mlp(), 3)
    with pytest.raises(ConfigError, match="class_path"):
        build_model("custom", in_channels=1, num_classes=2)


@pytest.mark.parametrize("name,params,message", [
    ("resnet9000", {}, "unknown model"),
    ("wide_resnet", {"depth": 27}, "6n \\+ 4"),
    ("wide_resnet", {"depth": 4}, "depth"),
    ("wide_resnet", {"width": 0}, "width"),
    ("wide_resnet", {"width": 2.5}, "width"),
    ("wide_resnet", {"dropout": 1.0}, "dropout"),
    ("wide_resnet", {"bogus": 1}, "unexpected keyword"),
    ("small_cnn", {"norm": "layer"}, "norm"),
    ("small_cnn", {"width": 0}, "width"),
    ("preact_resnet18", {"width": -1}, "width"),
    ("small_cnn", {"mean": [0.1, 0.2]}, "2 values but the images have 3 channels"),
    ("small_cnn", {"std": [0.1, 0.0, 0.2]}, "std must be > 0"),
    ("small_cnn", {"mean": "abc"}, "mean must be"),
    ("small_cnn", {"num_classes": 1}, "num_classes"),
    ("small_cnn", {"in_channels": 0}, "in_channels"),
])
def test_bad_configuration_is_a_config_error(name, params, message):
    kwargs = {"in_channels": 3, "num_classes": 10, **params}
    with pytest.raises(ConfigError, match=message):
        build_model(name, **kwargs)


def test_registry_names():
    assert {"small_cnn", "preact_resnet18", "wide_resnet", "custom"} <= set(MODELS.names())
