"""Every registered augmentation's reported info keys on a dry batch equal its declaration."""
import pytest
import torch

from auglabel.augment import AUGMENTATIONS, Augmentation
from auglabel.augment.info_keys import INFO_KEYS, declared
from auglabel.batch import Batch
from auglabel.engine.step import ComponentSpec

MODEL = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
#: registered names -> extra parameter sets whose declarations differ (defaults always checked)
VARIANTS = {
    "pipeline": [{"members": ["standard", "mixup"]}, {"members": ["standard", "augmix"]},
                 {"members": ["mixup", "gaussian_noise"]}, {"members": ["standard", "autodo"]}],
    "standard": [{"padding": 0}, {"flip": False}],
    "augmix": [{"jsd": False}],
    "pgd": [{"clean_fraction": 0.5, "steps": 1}],
    "fgsm": [{"clean_fraction": 0.5}],
}
#: auglabel's own registered augmentations (other test modules register test-only classes)
OWN = [name for name in AUGMENTATIONS.names() if AUGMENTATIONS.get(name).__module__.startswith("auglabel.")]
CASES = [(name, params) for name in OWN
         for params in ([] if name == "pipeline" else [{}]) + VARIANTS.get(name, [])]


def dry_run(augment: Augmentation) -> Batch:
    batch = Batch(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), torch.arange(4), 4)
    augment.setup(ComponentSpec(num_classes=4, feature_dim=None, input_shape=(3, 8, 8), dataset_size=4,
                                train_size=4, labels=torch.arange(4)))
    return augment(batch, generator=torch.Generator().manual_seed(0), model=MODEL)


@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_reported_keys_equal_the_declaration(name, params):
    augment = AUGMENTATIONS.build(name, **params)
    keys = augment.reported_keys()
    assert keys is not None, f"{name} declares no info keys"
    assert set(dry_run(augment).info) == keys
    if name != "pipeline":
        assert keys <= type(augment).reports
    assert keys <= set(INFO_KEYS)  # every key has its documented home
    assert ("distance" in keys) == bool(augment.reports_distance) or name == "pipeline"


def test_every_registered_class_declares_documented_keys():
    assert {"standard", "mixup", "augmix", "pipeline"} <= set(OWN)
    for name in OWN:
        cls = AUGMENTATIONS.get(name)
        if name != "pipeline":
            assert isinstance(cls.reports, frozenset) and cls.reports <= set(INFO_KEYS), name


def test_undocumented_key_is_refused():
    with pytest.raises(KeyError, match="not documented"):
        declared("mystery")


def test_user_augmentation_is_undeclared():
    assert Augmentation().reported_keys() is None


def _counting(base):
    class Counting(base):
        calls = 0

        def forward(self, batch, **kwargs):
            type(self).calls += 1
            return super().forward(batch, **kwargs)

    return Counting()


def test_compatibility_is_a_set_check_for_declared_augmentations():
    from auglabel.augment import Mixup, Pipeline, StandardAugmentation
    from auglabel.engine.build import check_compatible
    from auglabel.errors import ConfigError
    from auglabel.labels import LABEL_STRATEGIES

    sample = [Batch(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]), torch.arange(4), 4)]
    mixup = _counting(Mixup)
    check_compatible(mixup, LABEL_STRATEGIES.build("mixup"), MODEL, sample)
    check_compatible(Pipeline(["standard", mixup]), LABEL_STRATEGIES.build("mixup"), MODEL, sample)
    with pytest.raises(ConfigError, match="autodo learns one weight"):  # check_reported: keys only
        check_compatible(Pipeline(["standard", mixup]), LABEL_STRATEGIES.build("autodo"), MODEL, sample)
    with pytest.raises(ConfigError, match="needs per-sample gamma"):
        check_compatible(StandardAugmentation(), LABEL_STRATEGIES.build("mixup"), MODEL, sample)
    assert type(mixup).calls == 0  # no dry run
    with pytest.raises(ConfigError, match="pls pairs images itself"):  # PLS needs values: dry run
        check_compatible(mixup, LABEL_STRATEGIES.build("pls", distribution="uniform"), MODEL, sample)
    assert type(mixup).calls == 1
