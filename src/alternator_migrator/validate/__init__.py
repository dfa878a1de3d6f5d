"""Validation: compares source and target in both directions and reports the differences.

Layer: uses snapshot, target, aws, config and the ground."""

from .compare import compare_items
from .report import ValidationReport
from .validator import Validator, validate

__all__ = [
    "ValidationReport",
    "Validator",
    "compare_items",
    "validate",
]
