"""Augmentation pipelines: order, seeded per-sample randomness, info merging, distance delegation, JSD views."""
import pytest
import torch

from auglabel.augment import AUGMENTATIONS, AugMix, GaussianNoise, Mixup, Pipeline, StandardAugmentation
from auglabel.augment.pipeline import build_member
from auglabel.batch import Batch
from auglabel.errors import ConfigError
from auglabel.labels import LABEL_STRATEGIES


def make_batch(n=6, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 3, size, size, generator=g), torch.arange(n) % 4, torch.arange(n), 4)


def run(aug, batch, seed=0):
    return aug(batch, generator=torch.Generator().manual_seed(seed))


def test_members_apply_in_order_sharing_one_generator():
    batch = make_batch()
    pipe = Pipeline(["standard", {"name": "mixup", "params": {"beta": 0.5}}])
    assert pipe.member_names == ["standard", "mixup"] and pipe.members[1].beta == 0.5
    g = torch.Generator().manual_seed(3)
    expected = Mixup(beta=0.5)(StandardAugmentation()(batch, generator=g), generator=g)
    out = run(pipe, batch, seed=3)
    assert torch.equal(out.inputs, expected.inputs)
    for key, value in expected.info.items():
        assert torch.equal(out.info[key], value), key


def test_one_member_pipeline_draws_what_the_member_draws():
    batch = make_batch()
    assert torch.equal(run(Pipeline(["mixup"]), batch, 5).inputs, run(Mixup(), batch, 5).inputs)


def test_deterministic_for_a_seed_and_random_per_sample():
    pipe = Pipeline(["standard", "mixup"])
    batch = make_batch(n=32)
    a, b, c = run(pipe, batch, 1), run(pipe, batch, 1), run(pipe, batch, 2)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.info["gamma"], b.info["gamma"])
    assert not torch.equal(a.inputs, c.inputs)
    assert a.info["gamma"].unique().numel() == 32  # one draw per sample
    assert a.info["crop_offset"].unique(dim=0).shape[0] > 1 and 0 < int(a.info["flipped"].sum()) < 32


def test_merged_info_is_the_union_of_the_members_info():
    pipe = Pipeline(["standard", "mixup"])
    out = run(pipe, make_batch())
    std = run(StandardAugmentation(), make_batch())
    mix = run(Mixup(), make_batch())
    assert set(out.info) == set(std.info) | set(mix.info) == pipe.reported_keys()
    assert set(std.info).isdisjoint(mix.info)


@pytest.mark.parametrize("members,key", [(["mixup", "cutmix"], "gamma"), (["standard", "standard"], "crop_offset")])
def test_a_key_reported_twice_is_a_build_time_error(members, key):
    with pytest.raises(ConfigError, match=f"members .* both report info key '{key}'"):
        Pipeline(members)


def test_declarations_follow_parameters():
    # pgd with clean rows reports view; AugMix without JSD reports none: no collision
    pipe = Pipeline([{"name": "pgd", "params": {"clean_fraction": 0.5}}, {"name": "augmix", "params": {"jsd": False}}])
    assert "view" in pipe.reported_keys()
    assert Pipeline([{"name": "standard", "params": {"padding": 0}}, "autodo"]).reported_keys() == {
        "flipped", "autodo_applied", "autodo_params"}


def test_view_collision_between_augmix_jsd_and_pgd():
    with pytest.raises(ConfigError, match="both report info key 'view'"):
        Pipeline([{"name": "pgd", "params": {"clean_fraction": 0.5}}, "augmix"])


def test_several_distance_reporters_withhold_the_distance_keys():
    pipe = Pipeline(["mixup", "gaussian_noise"])
    out = run(pipe, make_batch())
    assert "distance" not in out.info and "distance" not in pipe.reported_keys()
    assert {"gamma", "sigma"} <= set(out.info)
    assert not pipe.reports_distance and not pipe.supports_distance_control()


def test_multi_view_member_must_be_last():
    with pytest.raises(ConfigError, match="must be the last member"):
        Pipeline(["augmix", "standard"])


def test_bad_members_are_config_errors():
    for members in ([], "standard", [42], [{"name": "mixup", "class_path": "os.system"}]):
        with pytest.raises(ConfigError):
            Pipeline(members)
    with pytest.raises(ConfigError, match="unknown augmentation"):
        Pipeline(["nonsense"])
    assert isinstance(build_member(Mixup())[1], Mixup)


def test_apply_at_distance_delegates_to_the_one_distance_member():
    pipe = Pipeline(["standard", "gaussian_noise"])
    assert pipe.reports_distance and pipe.supports_distance_control() and pipe.bucket_groups == 1
    batch = make_batch()
    distance = torch.linspace(0, 1, len(batch))
    g = torch.Generator().manual_seed(4)
    expected = GaussianNoise().apply_at_distance(StandardAugmentation()(batch, generator=g), distance, generator=g)
    out = pipe.apply_at_distance(batch, distance, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out.inputs, expected.inputs) and torch.equal(out.info["distance"], distance)
    assert "crop_offset" in out.info  # the other member applied as usual


def test_distance_member_bucket_groups_and_mixup_labels():
    pipe = Pipeline(["standard", {"name": "augmix", "params": {"jsd": False, "width": 1}}])
    assert pipe.bucket_groups == 3
    mix = Pipeline(["standard", "mixup"])
    batch = make_batch()
    out = mix.apply_at_distance(batch, torch.full((len(batch),), 0.5), generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.labels, out.info["partner_label"])  # mixup's own distance rule: partner dominates


@pytest.mark.parametrize("members,fragment", [(["standard"], "no member reports one"),
                                              (["mixup", "gaussian_noise"], "2 members report one (mixup, gaussian_noise)")])
def test_autolabel_refuses_zero_or_several_distance_members(members, fragment):
    strategy = LABEL_STRATEGIES.build("autolabel")
    with pytest.raises(ConfigError, match=r"autolabel needs an augmentation") as exc:
        strategy.bind(Pipeline(members))
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_autolabel_binds_to_a_pipeline_with_one_distance_member():
    strategy = LABEL_STRATEGIES.build("autolabel", num_buckets=5)
    strategy.bind(Pipeline(["standard", {"name": "augmix", "params": {"width": 1}}]))
    assert strategy.values.shape == (3, 5)


def test_jsd_views_are_made_from_the_same_cropped_image():
    b = 5
    batch = make_batch(n=b)
    pipe = Pipeline([{"name": "standard", "params": {"padding": 2}}, {"name": "augmix", "params": {"jsd": True}}])
    assert pipe.num_views == 3
    out = run(pipe, batch, 7)
    assert out.num_views == 3 and out.inputs.shape == (3 * b, 3, 8, 8)
    cropped = run(StandardAugmentation(padding=2), batch, 7)  # the crop draws come first from the generator
    assert torch.equal(out.inputs[:b], cropped.inputs)  # clean view = the cropped, flipped image
    for key in ("crop_offset", "flipped"):  # one crop per sample, the same in every view
        views = out.info[key].chunk(3)
        assert torch.equal(views[0], cropped.info[key]) and all(torch.equal(v, views[0]) for v in views)
    assert torch.equal(out.info["view"], torch.arange(3).repeat_interleave(b))
    loss = pipe.extra_loss(torch.randn(3 * b, 4), out)
    assert loss is not None and loss.ndim == 0


def test_pipeline_state_dict_holds_every_member():
    pipe = Pipeline(["standard", "augmix"])
    pipe.members[0].register_buffer("marker", torch.ones(1))
    assert "members.0.marker" in pipe.state_dict()


def test_pipeline_is_registered_and_exported():
    assert AUGMENTATIONS.get("pipeline") is Pipeline
    assert isinstance(AUGMENTATIONS.build("pipeline", members=["standard", "mixup"]).members[1], Mixup)
    assert isinstance(Pipeline([AugMix(jsd=False)]).members[0], AugMix)
