"""Every layer and loss factory fnn exports has a planted-bug test: a test marked
`@planted_bug("name")` (tests/helpers/planted.py) that plants a likely mistake in its
backward and asserts that a check fails it. The marks are read from the test files, so a
new factory without one fails here, and so does a mark naming no factory.

The planted-bug tests of the factories whose family has no test file of its own (the
activations, conv1d, avg_pool, flatten, dropout, serial and the binary losses) are here:
each plants its mistake in the catalogue item's layer or loss and runs that item's check
against `jax.vjp`.
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import pytest
from helpers.planted import (
    factories_with_a_backward,
    planted_bug,
    planted_bug_tests,
    unplanted,
)
from jax import lax
from jax.scipy.special import erf

import fnn
from fnn.check import CASES
from fnn.core import Walk
from fnn.layers.parts import unpack_mask
from fnn.walk import combinator


def test_every_factory_with_a_backward_has_a_planted_bug_test():
    assert unplanted(factories_with_a_backward(), planted_bug_tests()) == []


def test_the_coverage_check_catches_a_new_factory_and_a_stale_mark():
    tests = {name: planted_bug_tests()[name] for name in ("dense", "tanh")}
    assert unplanted({"dense", "tanh"}, tests) == []
    del tests["tanh"]
    tests["gleu"] = ["check/test_x.py::test_y"]
    assert unplanted({"dense", "tanh", "new_layer"}, tests) == [
        "new_layer (no planted-bug test)",
        "tanh (no planted-bug test)",
        "gleu (marked in check/test_x.py::test_y, not a factory)",
    ]


def test_the_marks_are_read_from_strings_and_from_module_level_tables(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        "BUGS = {'relu': 1, 'elu': 2}\n\n"
        "@planted_bug('dense')\n@other\ndef test_a():\n    pass\n\n"
        "@helpers.planted.planted_bug(*BUGS)\ndef test_b():\n    pass\n"
    )
    assert planted_bug_tests(tmp_path) == {
        "dense": ["test_marked.py::test_a"],
        "relu": ["test_marked.py::test_b"],
        "elu": ["test_marked.py::test_b"],
    }
    (tmp_path / "other").mkdir()  # another root: each root's marks are read once
    (tmp_path / "other" / "test_bad.py").write_text("@planted_bug(N[0])\ndef test_c():\n    pass\n")
    with pytest.raises(ValueError, match="test_bad.py::test_c: planted_bug takes strings"):
        planted_bug_tests(tmp_path / "other")


# ---------------------------------------------------------------------- the planted bugs


def _planted(item: str, backward):
    """The catalogue item `item` with its layer's (or loss's) backward replaced."""
    case = CASES[item]
    return dataclasses.replace(case, build=lambda: case.build()._replace(backward=backward))


def _activation(grad):
    """An activation's backward `(params, residuals, dy) -> ((), dx)` from `grad`."""
    return lambda params, residuals, dy: ((), grad(residuals, dy))


_SQRT_2 = math.sqrt(2)

# Each activation's likeliest mistake, in its catalogue item's layer.
ACTIVATION_BUGS = {
    "identity": _activation(lambda _, dy: jnp.zeros_like(dy)),  # dy not passed on
    "tanh": _activation(lambda y, dy: dy * (1 - y)),  # the square forgotten: 1 − y, not 1 − y²
    "relu": _activation(lambda bits, dy: dy),  # the mask [x > 0] forgotten
    # the negative side's slope forgotten (relu's backward)
    "leaky_relu": _activation(lambda bits, dy: jnp.where(unpack_mask(bits, dy), dy, 0)),
    "elu": _activation(lambda y, dy: jnp.where(y > 0, dy, dy * y)),  # α·eˣ = y + α, not y
    "softplus": _activation(lambda y, dy: dy * jax.nn.sigmoid(y)),  # σ(x) taken at y
    # Φ(x) alone: the x·φ(x) of the product rule forgotten
    "gelu": _activation(lambda x, dy: dy * 0.5 * (1 + erf(x / _SQRT_2))),
    "silu": _activation(lambda x, dy: dy * jax.nn.sigmoid(x)),  # σ(x) alone: x·σ'(x) forgotten
    "softmax": _activation(lambda y, dy: dy * y * (1 - y)),  # the Jacobian's diagonal only
    "log_softmax": _activation(lambda y, dy: dy - jnp.exp(y)),  # Σ_j dy_j taken as 1
}


@planted_bug(*ACTIVATION_BUGS)
@pytest.mark.parametrize("name", list(ACTIVATION_BUGS))
def test_checker_catches_the_planted_activation_bugs(name):
    result = _planted(name, ACTIVATION_BUGS[name]).run("float64", finite_differences=False)
    assert not result.passed, str(result)
    assert result.leaves["x"]["rel"] > 1e-3, str(result)


def _conv1d_unflipped_kernel(params, x, dy):
    """conv1d(3, 3, SAME)'s dx as a correlation of dy with W, not with W flipped."""
    grads, _ = fnn.conv1d(3, 3).backward(params, x, dy)
    dx = lax.conv_general_dilated(
        dy, params["W"], (1,), [(1, 1)], dimension_numbers=("NWC", "WOI", "NWC")
    )  # wrong: dx = dy ⋆ flip(W)ᵀ
    return grads, dx


def _avg_pool_without_the_count(params, residuals, dy):
    _, dx = fnn.avg_pool(2).backward(params, residuals, dy)
    return (), 4 * dx  # dy spread over each 2×2 window without the 1/count


def _dropout_without_the_scale(params, residuals, dy):
    keep = unpack_mask(residuals.keep, dy)
    return (), jnp.where(keep, dy, 0)  # wrong: dx = dy ⊙ keep/(1 − rate)


LAYER_BUGS = {  # catalogue item: (factory, planted backward)
    "conv1d": ("conv1d", _conv1d_unflipped_kernel),
    "avg_pool": ("avg_pool", _avg_pool_without_the_count),
    "dropout_train": ("dropout", _dropout_without_the_scale),
}


@planted_bug("conv1d", "avg_pool", "dropout")
@pytest.mark.parametrize("item", list(LAYER_BUGS))
def test_checker_catches_the_planted_layer_bugs(item):
    _, backward = LAYER_BUGS[item]
    result = _planted(item, backward).run("float64", finite_differences=False)
    assert not result.passed, str(result)
    assert result.leaves["x"]["rel"] > 0.1, str(result)


@planted_bug("flatten")
def test_checker_catches_a_flatten_that_leaves_dy_flat():
    result = _planted("flatten", lambda params, res, dy: ((), dy)).run("float64", False)
    assert not result.passed and "shape" in result.error, str(result)


@planted_bug("serial")
def test_checker_catches_a_chain_that_runs_its_backwards_in_forward_order():
    """serial's walk with its backward in the forward's order (square layers, so the
    shapes still agree); the same walk in reverse order passes."""
    layers = (fnn.dense(4), fnn.tanh(), fnn.dense(4))

    def chain_forward(call, x):
        for i in range(3):
            x = call(i, x)
        return x

    def chain_backward(order):
        def backward(call, dy):
            for i in order:
                dy = call(i, dy)  # dx_i from dy_{i+1}: right in reverse order only
            return dy

        return backward

    def chain(order):
        return combinator(Walk(layers, chain_forward, chain_backward(order)), f"chain{order}")

    assert fnn.check_layer(chain((2, 1, 0)), (4,), finite_differences=False).passed
    result = fnn.check_layer(chain((0, 1, 2)), (4,), finite_differences=False)
    assert not result.passed, str(result)
    assert result.leaves["x"]["rel"] > 1e-3, str(result)


def _mean(dvalue, residual_part):
    return dvalue / residual_part.size  # the 1/N of a mean over every element


LOSS_BUGS = {
    # dL/dr = r everywhere: the quadratic branch's gradient where |r| > δ too
    "huber": lambda r, dvalue=1.0: _mean(dvalue, r) * r,
    # (p − t)/N, the gradient on logits, for a loss on probabilities
    "binary_cross_entropy": lambda res, dvalue=1.0: _mean(dvalue, res.p) * (res.p - res.target),
    # (z − t)/N: the sigmoid forgotten
    "sigmoid_binary_cross_entropy": lambda res, dvalue=1.0: (
        _mean(dvalue, res.z) * (res.z - res.target)
    ),
}


@planted_bug(*LOSS_BUGS)
@pytest.mark.parametrize("name", list(LOSS_BUGS))
def test_checker_catches_the_planted_loss_bugs(name):
    result = _planted(name, LOSS_BUGS[name]).run("float64", finite_differences=False)
    assert not result.passed and result.max_rel_err > 1e-3, str(result)
