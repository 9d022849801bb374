"""The public API: ``from auglabel import ...`` for every name in ``__all__``, a cheap ``import auglabel``, a
regular ``auglabel.engine`` package, and family packages that export every registered class."""
import importlib
import subprocess
import sys

import pytest

import auglabel

PACKAGES = ["auglabel", "auglabel.engine", "auglabel.augment", "auglabel.labels", "auglabel.models",
            "auglabel.calibrate", "auglabel.data"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_name_in_all_is_importable(package):
    module = importlib.import_module(package)
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    namespace: dict = {}
    exec(f"from {package} import *", namespace)  # noqa: S102
    assert set(module.__all__) <= set(namespace)


def test_the_documented_names_are_the_real_objects():
    from auglabel.batch import Batch
    from auglabel.engine.config import ExperimentConfig
    from auglabel.engine.runs import load_run
    from auglabel.engine.trainer import Trainer

    for name, value in [("Trainer", Trainer), ("ExperimentConfig", ExperimentConfig), ("Batch", Batch),
                        ("load_run", load_run)]:
        assert getattr(auglabel, name) is value and name in auglabel.__all__
    for name in ["Augmentation", "LabelStrategy", "AUGMENTATIONS", "LABEL_STRATEGIES", "MODELS", "CALIBRATORS",
                 "build_step", "load_splits", "evaluate", "TemperatureScaling", "ImageDataset", "ConfigError"]:
        assert name in auglabel.__all__ and name in dir(auglabel)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        auglabel.Nope  # noqa: B018


def test_import_auglabel_is_cheap_and_loads_torch_only_on_use():
    code = ("import sys, time; t = time.perf_counter(); import auglabel; dt = time.perf_counter() - t; "
            "cheap = 'torch' not in sys.modules; auglabel.Trainer; print(cheap, 'torch' in sys.modules, dt)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["True", "True"], out
    assert float(out[2]) < 0.5, f"import auglabel took {out[2]} s"


def test_engine_is_a_regular_package():
    import auglabel.engine

    assert auglabel.engine.__file__.endswith("__init__.py")
    from auglabel.engine import Trainer, trainer  # a lazy name and a submodule

    assert trainer.Trainer is Trainer


@pytest.mark.parametrize("package,registry", [("auglabel.augment", "AUGMENTATIONS"),
                                              ("auglabel.labels", "LABEL_STRATEGIES"),
                                              ("auglabel.models", "MODELS"),
                                              ("auglabel.calibrate", "CALIBRATORS")])
def test_family_packages_export_every_registered_class(package, registry):
    module = importlib.import_module(package)
    entries = getattr(module, registry)
    # registered by the package's own modules (other tests register dummies of theirs: those are not exports)
    own = [key for key in entries.names() if entries.get(key).__module__.startswith(package + ".")]
    assert len(own) >= 3
    for key in own:
        factory = entries.get(key)
        assert getattr(module, factory.__name__) is factory, f"{package} does not export {factory.__name__} ({key!r})"
        assert factory.__name__ in module.__all__


def test_the_classes_named_in_the_issue_import_from_their_families():
    from auglabel.augment import AugMix, CutMix, Mixup, PGDAugmentation, StandardAugmentation
    from auglabel.labels import AutoLabel, OneHot, PairwiseLabelSmoothing, UniformSmoothing
    from auglabel.models import SmallCNN

    assert AugMix.__module__ == "auglabel.augment.augmix" and Mixup.__module__ == "auglabel.augment.mixup"
    assert {CutMix, PGDAugmentation, StandardAugmentation} <= {auglabel.AUGMENTATIONS.get(n)
                                                               for n in auglabel.AUGMENTATIONS.names()}
    assert auglabel.LABEL_STRATEGIES.get("autolabel") is AutoLabel and auglabel.LABEL_STRATEGIES.get("pls") is \
        PairwiseLabelSmoothing
    assert auglabel.LABEL_STRATEGIES.get("onehot") is OneHot and auglabel.LABEL_STRATEGIES.get("uniform") is \
        UniformSmoothing
    assert auglabel.MODELS.get("small_cnn") is SmallCNN


def test_export_refuses_a_registered_name_that_would_shadow_another():
    from auglabel._autoimport import export_registered
    from auglabel.registry import Registry

    registry = Registry("thing")

    @registry.register("a")
    class Thing:
        pass

    namespace = {"__name__": "pkg", "Thing": object()}
    with pytest.raises(RuntimeError, match="would shadow pkg.Thing"):
        export_registered(namespace, registry)
    assert export_registered({"__name__": "pkg"}, registry) == ["Thing"]
