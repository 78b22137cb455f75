"""Every built-in forward against its independent reference (fnn/check/references.py):
each catalogue item is referenced or listed with a reason, the references agree with
fnn's forwards, and planted wrong forwards (a wrong constant, a wrong α, a lost bias, an
average dividing by the wrong count, a mask left off) are reported as failures.

The fast tier checks one item of each family (a layer or loss: "conv2d", "huber") in one
compiled program, and the planted forwards in another; the slow tier checks every item in
float64 (the items the fast tier leaves out, in one more program) and float32.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fnn import losses
from fnn.check.catalogue import CASES
from fnn.check.checker import check_layer
from fnn.check.references import (
    FORWARD_RTOL,
    REFERENCES,
    UNREFERENCED,
    ForwardResult,
    check_forward,
    check_forwards,
    format_forward_table,
    layer_point,
    unaccounted,
)
from fnn.core import Ctx, SettingError
from fnn.layers import (
    avg_pool,
    batch_norm,
    dense,
    dropout,
    elu,
    flatten,
    gelu,
    multi_head_attention,
    relu,
)

# Items chosen for what they show: pooling at a SAME border, normalisation in evaluation,
# dropout in training, causal attention.
CHOSEN = [
    "gelu", "elu", "dense", "avg_pool_3x3_stride2_same", "layer_norm", "batch_norm_eval",
    "dropout_train", "multi_head_attention_causal", "softmax_cross_entropy_labels",
]  # fmt: skip


def _family(name: str) -> str:
    """The name of an item's layer or loss, its hyperparameters left out: "conv2d"."""
    return CASES[name].build().name.split("(")[0]


def _one_of_each_family() -> list[str]:
    """CHOSEN, then the first referenced item of every family CHOSEN leaves out (a new
    layer's first item among them)."""
    fast, seen = list(CHOSEN), {_family(name) for name in CHOSEN}
    for name in CASES:
        if name in REFERENCES and _family(name) not in seen:
            seen.add(_family(name))
            fast.append(name)
    return fast


FAST = _one_of_each_family()


def _failures(results):
    return "\n".join(str(r) for r in results if not r.passed)


def test_every_catalogue_item_is_referenced_or_listed_with_a_reason():
    assert unaccounted() == []
    assert not set(REFERENCES) & set(UNREFERENCED)
    for name, reason in UNREFERENCED.items():
        assert CASES[name].network, f"{name} is a single layer or loss: give it a reference"
        assert reason


def test_the_coverage_check_catches_a_new_item_and_a_stale_one():
    cases = {**CASES, "new_layer": CASES["dense"]}
    del cases["gelu"]
    assert unaccounted(cases) == ["new_layer (in the catalogue, without a reference)",
                                  "gelu (has a reference, not in the catalogue)"]  # fmt: skip


@functools.cache
def _fast_forwards() -> tuple[ForwardResult, ...]:
    """FAST's forwards in float64, in one program: the fast test's, which the float64
    sweep (slow) reuses rather than compiling them again."""
    return tuple(check_forwards(FAST))


def test_one_forward_of_each_family_matches_its_reference():
    assert len(FAST) > 30 and "rms_norm" in FAST  # every family, not a handful
    results = list(_fast_forwards())
    assert [r.name for r in results] == FAST
    assert all(r.passed and r.dtype == "float64" for r in results), _failures(results)
    assert all(r.max_rel_err <= FORWARD_RTOL["float64"] for r in results)


# ---------------------------------------------------------------------- planted forwards


def _elementwise(layer, fn):
    """`layer` with its forward replaced by `fn(x)` (keeping what the layer keeps)."""
    return layer._replace(forward=lambda params, x: (fn(x), layer.forward(params, x)[1]))


def _gelu_06(x):
    return 0.6 * x * (1 + lax.erf(x / math.sqrt(2)))  # 0.5 replaced by 0.6


def _gelu_tanh_rounded(x):
    u = math.sqrt(2 / math.pi) * (x + 0.0447 * x**3)  # 0.044715 rounded to 0.0447
    return 0.5 * x * (1 + jnp.tanh(u))


def _avg_over_window_size(params, x):
    total = lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    return total / 9, ()  # padding averaged in: the count_include_pad convention


def _dropout_unscaled(params, x, ctx):
    keep = jax.random.bernoulli(ctx.key, 0.7, x.shape)
    return jnp.where(keep, x, 0), ()  # the 1/(1 − rate) left out


def _half_mse(pred, target):
    return 0.5 * jnp.mean((pred - target) ** 2), ()  # a ½ the loss does not have


PLANTED = {
    "gelu": _elementwise(gelu(), _gelu_06),
    "gelu_tanh": _elementwise(gelu(approximate=True), _gelu_tanh_rounded),
    "elu": elu()._replace(forward=elu(2.0).forward),  # α = 2 where the item is α = 1
    "dense": dense(3)._replace(forward=lambda params, x: (x @ params["W"], x)),  # no bias
    "avg_pool_3x3_stride2_same": avg_pool(3, 2, "SAME")._replace(forward=_avg_over_window_size),
    "batch_norm_eval": batch_norm()._replace(  # the batch's statistics in evaluation
        forward=lambda params, x, ctx: batch_norm().forward(params, x, ctx=Ctx(train=True))
    ),
    "dropout_train": dropout(0.3)._replace(forward=_dropout_unscaled),
    "multi_head_attention_causal": multi_head_attention(2),  # the causal mask left off
    "mean_squared_error": losses.mean_squared_error()._replace(forward=_half_mse),
    "flatten": flatten()._replace(forward=lambda params, x: (x, ())),  # the shape unchanged
    "softmax": _elementwise(relu(), lambda x: jnp.full_like(x, jnp.nan)),  # NaN out
    "identity": _elementwise(relu(), lambda x: x[:, "bad"]),  # raises while tracing
}


def test_planted_wrong_forwards_fail_and_the_others_still_pass():
    results = {r.name: r for r in check_forwards([*PLANTED, "relu"], replace=PLANTED)}
    assert results.pop("relu").passed  # checked in the same program, unharmed
    assert not any(r.passed for r in results.values()), [r.name for r in results.values()]
    # a rounded constant is 1e-5 off, far above the tolerance yet far below a loose one
    assert 1e-7 < results["gelu_tanh"].max_rel_err < 1e-3
    assert results["avg_pool_3x3_stride2_same"].max_rel_err > 0.1
    assert "output shape (4, 4, 3, 2) differs from the reference's (4, 24)" in str(
        results["flatten"]
    )
    assert results["softmax"].max_rel_err == np.inf
    assert results["softmax"].error == "the output holds a NaN or an infinity"
    assert results["identity"].error.startswith("fnn's forward raised TypeError: ")
    table = format_forward_table(list(results.values()))
    assert table.count(" FAIL") == len(PLANTED) and f"0 passed, {len(PLANTED)} failed" in table
    assert "without a reference" not in table  # none of the items asked for lacks one
    table = format_forward_table(list(results.values()), unreferenced=3)
    assert table.endswith("; 3 whole networks without a reference (their layers have one)")


def _fails_when_run(x):
    def host(x):
        raise RuntimeError("planted failure at run time")

    return jax.pure_callback(host, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


def test_a_program_that_fails_to_run_is_retried_item_by_item():
    broken = _elementwise(relu(), _fails_when_run)  # traces, then raises when run
    relu_result, elu_result = check_forwards(["relu", "elu"], replace={"relu": broken})
    assert elu_result.passed
    assert not relu_result.passed
    assert relu_result.error.startswith("the compiled program raised")
    assert "planted failure at run time" in relu_result.error


def test_check_forward_runs_one_item_with_its_layer_replaced():
    result = check_forward("elu", layer=PLANTED["elu"])
    assert isinstance(result, ForwardResult) and not result.passed
    assert "elu [float64] forward against its reference: FAILED" in str(result)
    assert result.to_dict()["passed"] is False
    assert check_forward("elu", rtol=0.0).passed  # α = 1: the built-in is exact


def test_the_point_is_the_gradient_checks_point():
    """`layer_point` draws what `check_layer` draws: its params (seen by a `ctx` hook that
    then stops the check before anything compiles) and a `make_input`'s ids."""
    for name in ("conv2d", "embedding"):
        case, seen = CASES[name], {}

        def stop(params, seen=seen):
            seen["params"] = params
            raise ValueError("stop")

        def make_input(key, shape, dtype, case=case, seen=seen):
            seen["x"] = case.make_input(key, shape, dtype)
            return seen["x"]

        result = check_layer(case.build(), case.in_shape, batch=case.batch, ctx=stop,
                             input_scale=case.input_scale,
                             make_input=make_input if case.make_input else None)  # fmt: skip
        assert result.error.endswith("stop")
        _, params, x, _ = layer_point(case, "float64")
        _, other, _, _ = layer_point(case, "float64", key=1)  # a planted other point
        same = jax.tree.map(np.array_equal, params, seen["params"])
        assert all(jax.tree.leaves(same))
        assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, other, seen["params"])))
        if "x" in seen:
            np.testing.assert_array_equal(x, seen["x"])


# ---------------------------------------------------------------------- errors


def test_a_reference_reading_a_param_the_layer_does_not_have_says_so(monkeypatch):
    monkeypatch.setitem(REFERENCES, "dense", lambda params, x, ctx: x @ params["kernel"])
    result = check_forward("dense")
    assert not result.passed
    assert result.error == (
        "the reference raised KeyError: 'kernel' (it reads the params by the names the "
        "layer's init gives them)"
    )


def test_an_item_without_a_reference_says_why():
    with pytest.raises(ValueError, match="'cnn' has no forward reference: a whole network"):
        check_forward("cnn")


def test_an_unknown_item_lists_the_valid_ones():
    with pytest.raises(SettingError, match="unknown catalogue item with a forward reference "
                       "'gleu'; valid .*gelu"):  # fmt: skip
        check_forward("gleu")


def test_replace_must_name_a_checked_item_and_the_dtype_must_be_known():
    with pytest.raises(ValueError, match="replace names 'elu', not a checked item"):
        check_forwards(["gelu"], replace={"elu": PLANTED["elu"]})
    with pytest.raises(SettingError, match="unknown check dtype 'float16'"):
        check_forward("gelu", "float16")


# ---------------------------------------------------------------------- the full sweep


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_referenced_forward_matches_its_reference(dtype):
    """float32: every item, `check_forwards`' default; float64: the items FAST leaves
    out, beside FAST's results from the fast test's program."""
    expected = [n for n in CASES if n in REFERENCES]
    if dtype == "float32":
        results = check_forwards(dtype=dtype)
    else:
        rest = check_forwards([n for n in expected if n not in FAST])
        by_name = {r.name: r for r in [*_fast_forwards(), *rest]}
        results = [by_name[n] for n in expected if n in by_name]
    assert [r.name for r in results] == expected
    assert all(r.passed and r.dtype == dtype for r in results), _failures(results)
