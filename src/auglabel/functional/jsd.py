"""Jensen-Shannon consistency loss of AugMix (augmix.txt eq. for JS; METHODS.md sec. 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

MIXTURE_FLOOR = 1e-7  # the reference code clamps the mixture M to [1e-7, 1] before the log


def jensen_shannon(logits_clean: Tensor, logits_aug1: Tensor, logits_aug2: Tensor) -> Tensor:
    """``JS(p_clean, p_aug1, p_aug2) = 1/3 sum_i KL(p_i || M)``, ``M = clamp(mean_i p_i, 1e-7, 1)``.

    Each KL is averaged over the batch (``F.kl_div(log M, p_i, reduction="batchmean")``, as in
    the reference ``cifar.py``), so the result is a scalar.  The AugMix weight (12) is applied by
    the caller.

    Args:
        logits_clean, logits_aug1, logits_aug2: (B, K) logits of the three views of B samples.
    """
    views = (logits_clean, logits_aug1, logits_aug2)
    if any(v.dim() != 2 or v.shape != logits_clean.shape for v in views):
        raise ValueError(
            "jensen_shannon expects three (B, K) logit tensors of one shape, got "
            + ", ".join(str(tuple(v.shape)) for v in views)
        )
    probs = [F.softmax(v, dim=1) for v in views]
    log_mixture = torch.clamp(sum(probs) / 3.0, MIXTURE_FLOOR, 1.0).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / 3.0
