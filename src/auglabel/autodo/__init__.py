"""AutoDO (Gudovskiy et al., "AutoDO: Robust AutoAugment for Biased Data with Label Noise via Scalable
Probabilistic Implicit Differentiation", CVPR 2021; papers/autodo.txt; METHODS.md sec. 7).

The pieces: per-sample hyperparameter tables (:mod:`.tables`), the hyper step that optimises them by
implicit differentiation (:mod:`.hyper`, on :mod:`auglabel.functional.hypergradient`), the learned
augmentation ``augment: autodo`` (:mod:`auglabel.augment.autodo`, on :mod:`auglabel.functional.warp`) and the
loss weights / soft labels ``labels: autodo`` (:mod:`auglabel.labels.autodo`), which runs the hyper step.
"""
