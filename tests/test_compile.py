"""train.compile: torch.compile in place (checkpoint keys unchanged), the same training up to rounding, AutoDO's
double backward run eagerly, clear errors.  The fast tests compile with the aot_eager backend (dynamo's graph
capture and AOTAutograd, the parts that can break a training loop, without C++ code generation); the real
TorchInductor run is marked slow."""
import pytest
import torch

from auglabel.engine.checkpoint import load_checkpoint
from auglabel.engine.config import ComponentConfig, ExperimentConfig
from auglabel.engine.trainer import Trainer
from auglabel.errors import ConfigError
from auglabel.models import compiled
from auglabel.models.compiled import eager, is_compiled


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_compiled_training_matches_eager_and_keeps_checkpoint_keys(digits_config, tmp_path, aot_eager):
    plain = Trainer(digits_config(epochs=1), tmp_path / "eager", progress=False)
    plain_metrics = plain.fit()
    fast = Trainer(digits_config(epochs=1, compile=True), tmp_path / "compiled", progress=False)
    assert is_compiled(fast.model) and not is_compiled(plain.model)
    assert type(fast.model) is type(plain.model)
    fast_metrics = fast.fit()
    assert torch.allclose(_params(plain), _params(fast), atol=1e-4)
    assert fast_metrics["accuracy"] == pytest.approx(plain_metrics["accuracy"], abs=0.02)
    eager_keys = set(load_checkpoint(tmp_path / "eager" / "checkpoint.pt")["step"])
    assert set(load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["step"]) == eager_keys


def test_a_compiled_run_resumes_eagerly_and_back(digits_config, tmp_path, aot_eager):
    Trainer(digits_config(epochs=2, compile=True), tmp_path / "run", progress=False).run_epoch(1)
    resumed = Trainer(digits_config(epochs=2), tmp_path / "run", resume=True, progress=False)
    assert not is_compiled(resumed.model)
    assert resumed.fit()["accuracy"] > 0.3


def test_autodo_hyper_step_runs_under_compile(digits_config, tmp_path, aot_eager):
    cfg = digits_config(epochs=3, compile=True)
    cfg.augment = ComponentConfig("autodo")
    cfg.labels = ComponentConfig("autodo", {"hyper_start": 0, "plots": False})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    before = trainer.step.labels.hyper_parameters()[0].detach().clone()
    trainer.fit()
    assert not torch.equal(before, trainer.step.labels.hyper_parameters()[0].detach())  # the hyper step ran


def test_eager_bypasses_compilation(aot_eager):
    model = torch.nn.Linear(3, 2)
    assert eager(model) is model
    model.compile(backend="aot_eager")
    x = torch.randn(4, 3, requires_grad=True)
    y = eager(model)(x)  # second derivatives through an eager call work
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    w = model.weight.detach()  # L = sum((Wx + b)^2): d/dx of sum(dL/dx) = 2 W^T W 1, the same for every row
    assert torch.allclose(h, (2 * w.T @ w @ torch.ones(3)).expand(4, 3), atol=1e-5)


def test_bad_compile_mode_is_a_config_error(digits_config):
    with pytest.raises(ConfigError, match="train.compile_mode"):
        digits_config(compile=True, compile_mode="fastest").validate()


def test_compile_options_parse_from_a_dict():
    cfg = ExperimentConfig.from_dict({"train": {"compile": True, "compile_mode": "max-autotune"}}).validate()
    assert cfg.train.compile and cfg.train.compile_mode == "max-autotune"


def test_missing_cpu_compiler_is_a_config_error(digits_config, tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        Trainer(digits_config(epochs=1, compile=True), tmp_path / "run", progress=False)


@pytest.mark.slow
def test_inductor_training_matches_eager(digits_config, tmp_path):
    torch._dynamo.reset()
    plain = Trainer(digits_config(epochs=1), tmp_path / "eager", progress=False)
    plain.fit()
    fast = Trainer(digits_config(epochs=1, compile=True), tmp_path / "compiled", progress=False)
    fast.fit()
    assert torch.allclose(_params(plain), _params(fast), atol=1e-3)
