"""Verification of hand-written backward passes: the checker users run on their own
layers (`checker`, with `ties`), the catalogue of built-in items that `fnn check` runs
(`catalogue`), the built-in forwards against independent references (`references`), and
mutation testing of a backward (`mutate`)."""

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
from fnn.check.references import ForwardResult, check_forward, check_forwards

__all__ = [
    "CASES",
    "DEFAULT_RTOL",
    "DTYPES",
    "CheckResult",
    "ForwardResult",
    "LayerCase",
    "LossCase",
    "ModelCase",
    "MutantResult",
    "MutationReport",
    "check_forward",
    "check_forwards",
    "check_layer",
    "check_loss",
    "check_model",
    "draw_params",
    "format_table",
    "mutation_test",
    "run_checks",
]
