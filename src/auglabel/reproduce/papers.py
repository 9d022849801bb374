"""The papers ``auglabel reproduce`` knows: their tables as groups of (test-bed config, row label).

A :class:`Paper` lists :class:`Group` s (one results table each); a group names the extra
evaluation suites its rows need on top of the ones every run gets (clean test metrics,
temperature scaling, the -C corruptions).  Configs are test-bed stems, found in
``auglabel/configs/testbed/<stem>.yaml`` (package data).  A stem listed in several groups or
papers is one run per seed: runs are shared, ``<runs>/<stem>-seed<seed>``.

A row may name a *variant* of a config, ``<stem>__<variant>``: the same YAML file trained with the
overrides the paper lists for that variant (AutoDO's dataset distortions), its own run per seed.

Adding a paper is one entry of :data:`PAPERS`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

#: extra suites a group can ask for, in the order they are evaluated
EXTRA_SUITES = ("adversarial", "ood", "perturbations")
#: extra column sets a group can ask for (:func:`auglabel.reproduce.tables.extra_columns`)
EXTRA_COLUMNS = ("distortion", "autodo")
#: between a config stem and a variant name in a row's stem
VARIANT_SEPARATOR = "__"


def testbed_dir() -> Path:
    """The folder of the test-bed configs shipped with the package."""
    import auglabel

    return Path(auglabel.__file__).resolve().parent / "configs" / "testbed"


def scales() -> list[str]:
    """``small`` (the test bed itself) and the name of every overlay in ``configs/testbed/scale/``."""
    return ["small", *sorted(p.stem for p in (testbed_dir() / "scale").glob("*.yaml"))]


def scale_overlay(scale: str) -> Path | None:
    """``configs/testbed/scale/<scale>.yaml``, stacked after a config for a paper-scale twin (None: small)."""
    if scale not in scales():
        raise ConfigError(f"--scale must be one of {', '.join(scales())}, got {scale!r}")
    return None if scale == "small" else testbed_dir() / "scale" / f"{scale}.yaml"


def paper_scale_overlay() -> Path:
    """``configs/testbed/scale/paper.yaml``: the PreAct ResNet-18 twin."""
    return testbed_dir() / "scale" / "paper.yaml"


def slug(title: str) -> str:
    """A file-name form of a group title: ``"Adversarial training"`` -> ``"adversarial_training"``."""
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


@dataclass(frozen=True)
class Group:
    """One results table: ``rows`` are (config stem, row label); ``suites`` its extra evaluations.

    ``baseline``: the stem whose run of the same seed normalises the mCE (Hendrycks et al.'s
    relative corruption error); it must be one of the rows.
    """

    title: str
    reference: str
    rows: tuple[tuple[str, str], ...]
    suites: tuple[str, ...] = ()
    baseline: str | None = None
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [s for s in self.suites if s not in EXTRA_SUITES]
        if unknown:
            raise ConfigError(f"group {self.title!r}: unknown suite {unknown[0]!r}; choose from {', '.join(EXTRA_SUITES)}")
        unknown = [c for c in self.columns if c not in EXTRA_COLUMNS]
        if unknown:
            raise ConfigError(f"group {self.title!r}: unknown column set {unknown[0]!r}; "
                              f"choose from {', '.join(EXTRA_COLUMNS)}")
        if self.baseline is not None and self.baseline not in self.stems:
            raise ConfigError(f"group {self.title!r}: baseline {self.baseline!r} is not one of its rows")

    @property
    def slug(self) -> str:
        return slug(self.title)

    @property
    def stems(self) -> list[str]:
        return [stem for stem, _ in self.rows]


@dataclass(frozen=True)
class Paper:
    """A paper's tables at test-bed scale.

    ``dataset``: the test-bed dataset (its -C subsample is generated once up front).
    ``ood_reference``: a stem whose runs also get the max-softmax OOD AUROC after temperature
    scaling (a row of the OOD table).  ``calibration_plot``: draw ECE / OE bars per method.
    ``configs``: where the stems' YAML files live (default: the packaged test bed).
    ``confidence_study``: stems whose winning scores and reliability before/after temperature scaling are
    drawn (:mod:`auglabel.reproduce.confidence`).
    ``variants``: ``(name, overrides)`` pairs; a row ``<stem>__<name>`` trains ``<stem>.yaml`` with the
    overrides (``section.key=value``, as ``--override``; the user's ``--override`` still comes last).
    """

    name: str
    title: str
    groups: tuple[Group, ...]
    dataset: str = "fashion_mnist"
    ood_reference: str | None = None
    calibration_plot: bool = False
    configs: Path | None = None
    variants: tuple[tuple[str, tuple[str, ...]], ...] = ()
    confidence_study: tuple[str, ...] = ()

    @property
    def config_dir(self) -> Path:
        return Path(self.configs) if self.configs is not None else testbed_dir()

    def config(self, stem: str) -> Path:
        """The YAML file of a row's stem (a variant's is its base config's)."""
        return self.config_dir / f"{stem.split(VARIANT_SEPARATOR)[0]}.yaml"

    def overrides(self, stem: str) -> tuple[str, ...]:
        """The overrides of a row's variant (none for a plain stem); a one-line error for an unknown one."""
        base, sep, variant = stem.partition(VARIANT_SEPARATOR)
        if not sep:
            return ()
        known = dict(self.variants)
        if variant not in known:
            raise ConfigError(f"paper {self.name!r}: row {stem!r} names an unknown variant {variant!r}; "
                              f"known: {', '.join(known) or 'none'}")
        return tuple(known[variant])

    def select(self, names: list[str] | None) -> list[Group]:
        """The groups named by title or slug (case-insensitive), in the paper's order; all for None."""
        if not names:
            return list(self.groups)
        wanted = {slug(name) for name in names}
        known = {group.slug for group in self.groups}
        unknown = sorted(wanted - known)
        if unknown:
            choices = ", ".join(repr(group.title) for group in self.groups)
            raise ConfigError(f"paper {self.name!r} has no group {unknown[0]!r}; choose from {choices}")
        return [group for group in self.groups if group.slug in wanted]


def stem_suites(groups: list[Group]) -> dict[str, tuple[str, ...]]:
    """Every stem of ``groups`` once (first appearance order) with the union of its groups' extra suites."""
    suites: dict[str, set[str]] = {}
    for group in groups:
        for stem in group.stems:
            suites.setdefault(stem, set()).update(group.suites)
    return {stem: tuple(s for s in EXTRA_SUITES if s in extra) for stem, extra in suites.items()}


AUTOLABEL = Paper(
    name="autolabel", title="AutoLabel (Tables 2-4)",
    groups=(
        Group("AugMix", "Table 2", (("augmix", "AugMix"), ("augmix_autolabel", "+ AutoLabel"),
                                    ("augmix_autolabel_signed_gap", "+ AutoLabel, signed-gap update"))),
        Group("AugMix-JSD", "Table 2, JSD variant", (("augmix_jsd", "AugMix + JSD"),
                                                     ("augmix_jsd_autolabel", "+ AutoLabel"))),
        Group("mixup", "Table 3", (("mixup_alpha0.2", "mixup β=0.2"),
                                   ("mixup_alpha0.2_autolabel", "+ AutoLabel (β=0.2)"),
                                   ("mixup_alpha1", "mixup β=1"), ("mixup_alpha1_autolabel", "+ AutoLabel (β=1)"),
                                   ("mixup_alpha1_autolabel_signed_gap", "+ AutoLabel (β=1), signed-gap update"))),
        Group("Adversarial training", "Table 4", (("at", "AT"), ("ccat", "CCAT"),
                                                  ("at_sampled_eps", "AT, ε ~ U(0, ε_max) (control)"),
                                                  ("at_autolabel", "AT + AutoLabel")), suites=("adversarial",)),
        Group("Reference", "one-hot training", (("onehot", "one-hot"),)),
    ))

MIXUP_CALIBRATION = Paper(
    name="mixup-calibration", title="On mixup training (Thulasidasan et al. 2019: Fig. 2/6, Table 1)",
    groups=(
        Group("Calibration", "Fig. 2/6, Table 1",
              (("onehot", "one-hot"), ("uniform_0.05", "ULS ε=0.05"), ("uniform_0.1", "ULS ε=0.1"),
               ("confidence_penalty_0.1", "confidence penalty 0.1"), ("mixup_alpha0.1", "mixup α=0.1"),
               ("mixup_alpha0.2", "mixup α=0.2"), ("mixup_alpha0.4", "mixup α=0.4"), ("mixup_alpha1", "mixup α=1"),
               ("feature_mixup", "feature-only mixup (β=1)")), suites=("ood",)),
    ),
    ood_reference="onehot", calibration_plot=True)

AUGMIX = Paper(
    name="augmix", title="AugMix (Hendrycks et al. 2020)",
    groups=(
        Group("AugMix", "Tables 1-2, Fig. 5",
              (("standard", "standard (crop+flip)"), ("augmix", "AugMix (one chain, no JSD)"),
               ("augmix_jsd", "AugMix + JSD"), ("augmix_paper", "AugMix + JSD, width 3 (paper)")),
              suites=("perturbations",), baseline="standard"),
    ))

PLS = Paper(
    name="pls", title="Pairwise Label Smoothing (Table 1 and the Table 4 ablations)",
    groups=(
        Group("Table 1", "Table 1, Fashion-MNIST",
              (("onehot", "baseline (one-hot)"), ("uniform_0.1", "ULS-0.1"), ("uniform_0.2", "ULS-0.2"),
               ("uniform_0.3", "ULS-0.3"), ("mixup_alpha1", "mixup (λ ~ U(0, 1))"), ("pls", "PLS"))),
        Group("Ablations", "Table 4",
              (("pls", "PLS"), ("pls_no_original", "PLS without original-sample batches"),
               ("pls_uniform_distribution", "PLS with a uniform distribution (UD)"))),
    ), calibration_plot=True, confidence_study=("onehot", "uniform_0.2", "mixup_alpha1", "pls"))

#: AutoDO's dataset distortions (papers/autodo.txt Tables 1-3): (imbalance ratio IR, noise ratio NR)
AUTODO_CELLS = ((1, 0.0), (10, 0.1), (100, 0.3))
AUTODO_ROWS = (("autodo_baseline", "baseline (crop/flip)"), ("autodo_augmix", "AugMix"), ("autodo_a", "AutoDO A"),
               ("autodo_aw", "AutoDO A+W"), ("autodo_aws", "AutoDO A+W+S"),
               ("autodo_shared", "AutoDO A^SHA (one shared policy)"))


def _cell_name(ir: int, nr: float) -> str:
    return f"ir{ir}_nr{nr:g}"


AUTODO = Paper(
    name="autodo", title="AutoDO (Cheng et al. 2021: Tables 1-3 at test-bed scale)",
    groups=tuple(Group(f"IR-NR {ir}-{nr:g}", "Tables 1-3",
                       tuple((f"{stem}{VARIANT_SEPARATOR}{_cell_name(ir, nr)}", label) for stem, label in AUTODO_ROWS),
                       columns=("distortion", "autodo"))
                 for ir, nr in AUTODO_CELLS),
    variants=tuple((_cell_name(ir, nr), (f"data.imbalance_ratio={ir}", f"data.noise_ratio={nr:g}"))
                   for ir, nr in AUTODO_CELLS))

#: name -> paper; ``auglabel reproduce NAME``
PAPERS: dict[str, Paper] = {paper.name: paper for paper in (AUTOLABEL, MIXUP_CALIBRATION, AUGMIX, PLS, AUTODO)}


def get_paper(name: str | Paper) -> Paper:
    """A registered paper by name (a :class:`Paper` passes through); a one-line error listing them."""
    if isinstance(name, Paper):
        return name
    if name not in PAPERS:
        raise ConfigError(f"unknown paper {name!r}; choose from: {', '.join(PAPERS)}")
    return PAPERS[name]


__all__ = ["AUTODO_CELLS", "EXTRA_COLUMNS", "EXTRA_SUITES", "VARIANT_SEPARATOR", "Group", "Paper", "PAPERS", "get_paper", "paper_scale_overlay", "scale_overlay", "scales", "slug",
           "stem_suites", "testbed_dir"]
