"""Every per-sample ``batch.info`` key an augmentation reports: the one documented home of their names,
meanings and shapes (B: rows of the batch, all views included; W: AugMix width; D: AugMix max depth;
A: AutoDO ops; P: AutoDO op parameters).

Each augmentation class declares the keys its ``forward`` reports as ``reports`` (a frozenset of names
from :data:`INFO_KEYS`; :meth:`~auglabel.augment.base.Augmentation.reported_keys` narrows it for the
instance's parameters), so a label strategy's needs are a set check at configuration time
(:func:`~auglabel.engine.build.check_compatible`).  ``reports = None`` (the base class's default, e.g. a
user's own augmentation) means undeclared: the compatibility check then dry-runs it on two samples.
``tests/test_info_keys.py`` checks every registered augmentation's dry-run keys against its declaration.

Pipelines (:class:`~auglabel.augment.pipeline.Pipeline`) merge their members' keys: see that module.
"""
from __future__ import annotations

#: name -> (dtype and shape, meaning)
INFO_KEYS: dict[str, str] = {
    # distance axis (AutoLabel)
    "distance": "float (B,) in [0, 1]: how far the sample moved from its clean image (AutoLabel's bucket axis)",
    "group": "int64 (B,) in [0, bucket_groups): a second, discrete distance axis (AugMix: depth - 1)",
    # multi-view
    "view": "int64 (B,): view id, 0 = the clean image (AugMix + JSD; PGD/FGSM with clean_fraction)",
    # crop / flip (standard)
    "crop_offset": "int64 (B, 2): (dy, dx) of the random crop relative to the unpadded image",
    "flipped": "bool (B,): the image was flipped horizontally",
    # mixing (mixup, cutmix; PLS's own pairing reports the same names)
    "gamma": "float (B,): weight (mixup) or kept area fraction (cutmix) of the sample's own image",
    "partner": "int64 (B,): row of the mixing partner inside the batch",
    "partner_label": "int64 (B,): the partner's class label",
    "box": "int64 (B, 4): cutmix's pasted box (top, bottom, left, right), bottom/right exclusive",
    "paired": "bool (B,): the row was averaged with another image (PLS's own pairing in labels/pls.py)",
    "own_label": "int64 (B,): the clean image's label when apply_at_distance returns the partner's labels",
    # adversarial (pgd, fgsm)
    "eps": "float (B,): L-inf attack budget used for the sample",
    "delta_linf": "float (B,): ||x_adv - x||_inf actually reached",
    # additive noise (gaussian_noise)
    "sigma": "float (B,): standard deviation of the added Gaussian noise",
    # AugMix (functional.augmix; neutral values on clean views)
    "ops": "int64 (B, W, D): op index per chain and position, -1 where unused",
    "levels": "float (B, W, D): op levels",
    "signs": "int64 (B, W, D): op signs (+-1; 0 where unused)",
    "depths": "int64 (B, W): ops in each chain",
    "chain_weights": "float (B, W): Dirichlet weights of the chains",
    "skip_weight": "float (B,): weight m of the clean image in the final mix",
    "mix_weight": "float (B,): the same clean weight m (AutoLabel's lam)",
    "depth": "int64 (B,): the deepest chain's depth (0 on clean views)",
    # AutoDO
    "autodo_applied": "bool (B, A): which of the A geometric ops were applied",
    "autodo_params": "float (B, P): the ops' parameters",
}

#: keys about "the" distance of a sample; several pipeline members may report them, and the pipeline then
#: withholds them (no single distance describes the sample; AutoLabel refuses such a pipeline at build time).
DISTANCE_KEYS = frozenset({"distance", "group"})


def declared(*keys: str) -> frozenset[str]:
    """A ``reports`` declaration; an unknown name is a bug in the declaring class (KeyError at import)."""
    unknown = [key for key in keys if key not in INFO_KEYS]
    if unknown:
        raise KeyError(f"info keys {unknown} are not documented in auglabel.augment.info_keys.INFO_KEYS")
    return frozenset(keys)
