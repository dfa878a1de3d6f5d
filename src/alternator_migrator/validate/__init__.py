"""Validation: compares source and target in both directions and reports the differences.

Layer: uses snapshot, target, aws, config and the ground."""

from .validator import ValidationReport, Validator, compare_items, validate

__all__ = [
    "ValidationReport",
    "Validator",
    "compare_items",
    "validate",
]
