"""Robustness evaluation: corruptions (-C), perturbation stability (-P), adversarial accuracy, OOD detection."""
