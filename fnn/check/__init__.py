"""Verification of hand-written backward passes: the checker users run on their own
layers (`checker`) and the catalogue of built-in items that `fnn check` runs
(`catalogue`)."""

from fnn.check.catalogue import CASES, LayerCase, LossCase, ModelCase, format_table, run_checks
from fnn.check.checker import (
    DEFAULT_RTOL,
    DTYPES,
    CheckResult,
    check_layer,
    check_loss,
    check_model,
    draw_params,
)
from fnn.check.mutate import MutantResult, MutationReport, mutation_test

__all__ = [
    "CASES",
    "DEFAULT_RTOL",
    "DTYPES",
    "CheckResult",
    "LayerCase",
    "LossCase",
    "ModelCase",
    "MutantResult",
    "MutationReport",
    "check_layer",
    "check_loss",
    "check_model",
    "draw_params",
    "format_table",
    "mutation_test",
    "run_checks",
]
