"""auglabel: what label should augmented data carry?

Train image classifiers with batched augmentations and learned or adaptive labels, and judge
them by accuracy, calibration and robustness.
"""

__version__ = "0.1.0"
