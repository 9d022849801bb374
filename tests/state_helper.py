"""Flattened training state, for tests that compare two runs leaf by leaf."""
import copy

import torch


def flat(value, prefix=""):
    """A state dict's tensors (and other leaves) by dotted key, nested dicts and lists included."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{prefix}{i}.").items()}
    return {prefix: value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)}


def state_of(trainer):
    """Everything the trainer's step checkpoints (model, augmentation and label-strategy state), flattened."""
    return flat(trainer.step.state_dict())
