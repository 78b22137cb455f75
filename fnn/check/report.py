"""What a check reports: per-leaf errors of a hand-written gradient against JAX's, the
finite-difference, per-example and tie-point verdicts, and the `CheckResult` that holds
them."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import jax
import numpy as np

# The gradient tolerance: a hand-written gradient against JAX's, relative error per leaf.
# Its keys are the dtypes a check runs in (`fnn.check.checker.DTYPES`); `fnn.bench`'s
# GRAD_TOLERANCE extends it to the half-precision dtypes.
DEFAULT_RTOL = {"float64": 1e-10, "float32": 1e-4}
LEAF_SCALE_FLOOR = 1e-2  # a leaf's error is relative to at least 1e-2 × the largest leaf
FD_TOL = 1e-5  # the finite-difference tolerance, absolute and relative (check_grads's)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
      name: what was checked.
      dtype: "float64" or "float32".
      max_abs_err, max_rel_err: the largest errors over all leaves.
      rtol: the relative tolerance applied.
      passed: whether every leaf is within `rtol`, and no verdict (finite differences,
        per-example, ties) failed.
      leaves: per leaf path (e.g. `params[0]['W']`, `x`): `{"abs": ..., "rel": ...}`.
      finite_differences: "passed", "skipped (...)" or "failed: <message>".
      error: a structural problem (a missing or misshapen gradient), else "".
      per_example: the layer's `per_example_backward` against each example's own
        `jax.vjp`: "passed", "failed: <message>" or "n/a (<reason>)".
      per_example_rel_err: its largest relative error over all leaves, None when not run.
      ties: the check at integer inputs (tied maxima, exact zeros): "passed",
        "failed: <message>", "skipped (...)" or "n/a (<reason>)".
    """

    name: str
    dtype: str
    max_abs_err: float
    max_rel_err: float
    rtol: float
    passed: bool
    leaves: dict[str, dict[str, float]]
    finite_differences: str
    error: str = ""
    per_example: str = "n/a"
    per_example_rel_err: float | None = None
    ties: str = "n/a"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        per_example = self.per_example
        if per_example == "passed" and self.per_example_rel_err is not None:
            per_example += f" (max rel err {self.per_example_rel_err:.2e})"
        text = (
            f"{self.name} [{self.dtype}]: {verdict}, max abs err {self.max_abs_err:.2e}, "
            f"max rel err {self.max_rel_err:.2e} (rtol {self.rtol:g}), "
            f"finite differences {self.finite_differences}, per-example {per_example}, "
            f"ties {self.ties}"
        )
        worst = [
            f"{leaf} rel {e['rel']:.2e}" for leaf, e in self.leaves.items() if e["rel"] > self.rtol
        ]
        if worst:
            text += "; over tolerance: " + ", ".join(worst)
        return text + (f"; {self.error}" if self.error else "")


def _leaf_label(path) -> str:
    """A leaf's path as the report names it: `params[0]['W']`, `x`."""
    return re.sub(r"^\['(\w+)'\]", r"\1", jax.tree_util.keystr(path))


def _is_real(x) -> bool:
    return x.dtype != jax.dtypes.float0 and np.size(x) > 0


def compare(manual, reference) -> tuple[dict[str, dict[str, float]], str]:
    """Per-leaf errors between two pytrees; a structural problem is returned as text."""
    m_leaves, m_def = jax.tree_util.tree_flatten_with_path(manual)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
    if m_def != r_def:  # type: ignore[operator]  # jaxlib has no stubs: PyTreeDef unknown
        return {}, f"gradient tree structure {m_def} differs from the expected {r_def}"
    errors: dict[str, dict[str, float]] = {}
    overall = max(
        (float(np.max(np.abs(np.asarray(r, np.float64)))) for _, r in r_leaves if _is_real(r)),
        default=0.0,
    )
    for (path, m), (_, r) in zip(m_leaves, r_leaves, strict=True):
        label = _leaf_label(path)
        if r.dtype == jax.dtypes.float0:  # the input was integer: no derivative exists
            if m.dtype != jax.dtypes.float0 or m.shape != r.shape:
                return errors, (
                    f"{label}: expected a float0 zero cotangent of shape {r.shape} for an "
                    f"integer input, got dtype {m.dtype} shape {m.shape}"
                )
            continue
        if m.shape != r.shape:
            return errors, f"{label}: gradient shape {m.shape}, expected {r.shape}"
        m, r = np.asarray(m), np.asarray(r)
        if m.size == 0:
            errors[label] = {"abs": 0.0, "rel": 0.0}
            continue
        diff = np.abs(m.astype(np.float64) - r.astype(np.float64))
        abs_err = float(np.max(diff))
        scale = max(float(np.max(np.abs(r.astype(np.float64)))), LEAF_SCALE_FLOOR * overall)
        rel_err = abs_err / scale if scale > 0 else (0.0 if abs_err == 0 else math.inf)
        if not np.isfinite(abs_err):
            abs_err = rel_err = math.inf
        errors[label] = {"abs": abs_err, "rel": rel_err}
    return errors, ""


def structure(manual, reference) -> str:
    """A structural difference between two trees of shapes (`jax.eval_shape`), or ""."""
    m_leaves, m_def = jax.tree_util.tree_flatten_with_path(manual)
    r_leaves, r_def = jax.tree_util.tree_flatten_with_path(reference)
    if m_def != r_def:  # type: ignore[operator]  # jaxlib has no stubs: PyTreeDef unknown
        return f"gradient tree structure {m_def} differs from the expected {r_def}"
    for (path, m), (_, r) in zip(m_leaves, r_leaves, strict=True):
        label = _leaf_label(path)
        if r.dtype == jax.dtypes.float0 and (m.dtype != jax.dtypes.float0 or m.shape != r.shape):
            return (
                f"{label}: expected a float0 zero cotangent of shape {r.shape} for an "
                f"integer input, got dtype {m.dtype} shape {m.shape}"
            )
        if m.shape != r.shape:
            return f"{label}: gradient shape {m.shape}, expected {r.shape}"
    return ""


def short_verdict(verdict: str) -> str:
    """A verdict's first word, for a table: passed, failed, skipped, n/a, not run."""
    return "not run" if verdict.startswith("not run") else verdict.split(":")[0].split(" ")[0]


def finite_difference_verdict(analytic: float, numeric: float) -> str:
    """The verdict of the directional check `⟨v, backward(dy)⟩` against differences."""
    if abs(analytic - numeric) <= FD_TOL + FD_TOL * abs(numeric) and math.isfinite(analytic):
        return "passed"
    return (
        f"failed: along a random direction the hand-written backward gives {analytic:.6e}, "
        f"central differences {numeric:.6e}"
    )


def result(
    name, dtype, rtol, manual, reference, fd, *, per_example=None, ties="n/a"
) -> CheckResult:
    """The `CheckResult` of a hand-written gradient `manual` against `reference` (both
    labelled trees), with the finite-difference verdict `fd`, the per-example comparison
    `per_example` (a verdict string, or `(manual, reference)` labelled trees to compare
    with the same rule; None: "n/a") and the tie verdict `ties`."""
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    leaves, error = compare(manual, reference)
    max_abs = max((e["abs"] for e in leaves.values()), default=0.0)
    max_rel = max((e["rel"] for e in leaves.values()), default=0.0)
    if error:
        max_abs = max_rel = math.inf
    pe_verdict, pe_rel = per_example_verdict(per_example, rtol)
    passed = (
        not error
        and max_rel <= rtol
        and not any(v.startswith("failed") for v in (fd, pe_verdict, ties))
    )
    return CheckResult(
        name, dtype, max_abs, max_rel, rtol, passed, leaves, fd, error, pe_verdict, pe_rel, ties
    )


def per_example_verdict(per_example, rtol: float) -> tuple[str, float | None]:
    """`(verdict, max rel err)` of per-example gradients: `per_example` is a verdict
    already (a string), None ("n/a"), or `(manual, reference)` labelled trees, compared
    leaf by leaf as the batch gradient is (`compare`)."""
    if per_example is None:
        return "n/a", None
    if isinstance(per_example, str):
        return per_example, None
    leaves, error = compare(*per_example)
    if error:
        return f"failed: {error}", math.inf
    max_rel = max((e["rel"] for e in leaves.values()), default=0.0)
    worst = [f"{leaf} rel {e['rel']:.2e}" for leaf, e in leaves.items() if not e["rel"] <= rtol]
    if worst:
        return f"failed: over tolerance {rtol:g}: " + ", ".join(worst), max_rel
    return "passed", max_rel


def raised(name, dtype, rtol, error) -> CheckResult:
    """A failed result for a backward (or forward) that raised instead of returning."""
    message = str(error).split("\n")[0]
    rtol = DEFAULT_RTOL[dtype] if rtol is None else rtol
    error = f"raised {type(error).__name__}: {message}"
    return CheckResult(
        name,
        dtype,
        math.inf,
        math.inf,
        rtol,
        False,
        {},
        "not run",
        error,
        "not run",
        None,
        "not run",
    )
