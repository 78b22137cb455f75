"""Mutation testing of checks (fnn/check/mutate.py, mutants.py, backward_code.py): the
mutants generated for known code, a full score for a correct layer at a good check point,
survivors for a check point that cannot see a mistake, `fnn check --mutate` end to end,
and the built-in dense layer's mutants all caught by the catalogue (slow)."""

from __future__ import annotations

from unittest import mock

import jax
import jax.numpy as jnp
import pytest

import fnn
from fnn.check.backward_code import backward_sites, exercise, site_at
from fnn.check.mutants import mutants_of
from fnn.check.mutate import builtin_mutants, mutation_test, run_mutant
from fnn.cli import main
from fnn.layers.activations import elementwise

# ----------------------------------------------------------------------------- known code


def _known_backward(W, x, dy):
    dx = dy @ W.T - x  # a made-up gradient, one site for each operator
    dW = jnp.zeros_like(W)  # doubled, still zeros: an equivalent mutant
    return jnp.sum(-dx * 1.0, axis=0), dW


EXPECTED = [  # (operator, the mutated line without its comment), in source order
    ("factor 2", "dx = 2 * (dy @ W.T - x)"),
    ("sign", "dx = dy @ W.T + x"),
    ("dropped term", "dx = dy @ W.T"),
    ("dropped term", "dx = -x"),
    ("transpose", "dx = dy @ W - x"),
    ("factor 2", "dW = 2 * jnp.zeros_like(W)"),
    ("sign", "return -jnp.sum(-dx * 1.0, axis=0), dW"),
    ("factor 2", "return 2 * jnp.sum(-dx * 1.0, axis=0), dW"),
    ("sign", "return jnp.sum(-dx * 1.0, axis=0), -dW"),
    ("axis", "return jnp.mean(-dx * 1.0, axis=0), dW"),
    ("dropped term", "return jnp.sum(-dx, axis=0), dW"),
    ("axis", "return jnp.sum(-dx * 1.0, axis=-1), dW"),
    ("sign", "return jnp.sum(dx * 1.0, axis=0), dW"),
]


def test_the_mutants_of_a_known_function():
    code = _known_backward.__code__
    mutants = mutants_of(code.co_filename, "_known_backward", code.co_firstlineno, globals())
    assert [(m.operator, m.after.split("#")[0].strip()) for m in mutants] == EXPECTED
    # 2·zeros is zeros, `-dx * 1.0` → `-dx` is the same code once `x·1` is folded:
    # equivalent, never run
    equivalent = [m.after.split("#")[0].strip() for m in mutants if m.equivalent]
    assert equivalent == ["dW = 2 * jnp.zeros_like(W)", "return jnp.sum(-dx, axis=0), dW"]
    assert all(m.code is not None for m in mutants if not m.equivalent)
    assert {m.line - code.co_firstlineno for m in mutants} == {1, 2, 3}
    assert all(m.top == "_known_backward" for m in mutants)  # its own top-level function


# ----------------------------------------------------------------------------- layers


def _shared(a, x):
    """Called by the forward and the backward: not backward code, never mutated."""
    return a[None, :] * x


def _times(a, b):
    """Called only by the backward: mutated with it."""
    return a * b


def scale():
    """y = a ⊙ x, params {"a": (features,)}."""

    def init(key, in_shape, dtype=jnp.float32):
        return tuple(in_shape), {"a": jnp.ones((in_shape[-1],), dtype)}

    def forward(params, x):
        return _shared(params["a"], x), x

    def backward(params, x, dy):
        da = jnp.sum(_times(dy, x), axis=0)  # dL/da = Σ_batch dy ⊙ x
        dx = _shared(params["a"], dy)  # dL/dx = a ⊙ dy
        return {"a": da}, dx

    return fnn.Layer(init, forward, backward, "scale")


def cube():
    """y = x³ through fnn's `elementwise`, with a `grad` of its own (called by fnn's
    backward: backward code) and an `fn` (called by fnn's forward: left alone)."""

    def fn(x):
        return x * x * x, x

    def grad(x, dy):
        return 3 * x * x * dy  # dx = 3x² ⊙ dy

    return elementwise("cube", fn, grad)


def test_a_correct_layer_at_a_good_point_catches_every_mutant():
    """Planted: a check point that cannot see a mistake leaves survivors (below)."""
    factory_code = scale.__code__
    report = mutation_test(lambda: fnn.layers.serial(scale(), cube()), (3,))
    assert report.passed and report.score == 1.0, report.table()
    mutated = {r.mutant.function for r in report.results}
    assert mutated == {"scale.<locals>.backward", "_times", "cube.<locals>.grad"}
    assert {r.status for r in report.results} == {"caught"}
    assert report.count("caught", "wrong gradient") >= 10
    assert scale.__code__ is factory_code  # restored
    assert fnn.check_layer(scale(), (3,)).passed


def scaled(factor=1.5):
    """y = factor·x: a backward closing over `factor`."""

    def init(key, in_shape, dtype=jnp.float32):
        return tuple(in_shape), ()

    def forward(params, x):
        return factor * x, ()

    def backward(params, residuals, dy):
        dx = factor * dy  # dL/dx = factor·dy
        return (), dx

    return fnn.Layer(init, forward, backward, f"scaled({factor})")


def test_a_layer_object_has_its_own_closures_mutated_and_restored():
    """Given a Layer rather than its factory, the mutants replace the code of the very
    closure the layer holds (with its closure variable `factor`), and it comes back."""
    layer = scaled()
    code = layer.backward.__code__
    report = mutation_test(layer, (3,))
    assert report.passed and report.count("caught") == 4, report.table()
    assert layer.backward.__code__ is code


def _body(i, g):
    """A loop body handed to JAX itself, which keeps its trace (keyed by the function)."""
    return g + g


def doubling():
    """y = 2x, whose backward runs `_body` in a `lax.fori_loop`."""

    def init(key, in_shape, dtype=jnp.float32):
        return tuple(in_shape), ()

    def forward(params, x):
        return 2 * x, ()

    def backward(params, residuals, dy):
        return (), jax.lax.fori_loop(0, 1, _body, dy)  # dx = 2·dy

    return fnn.Layer(init, forward, backward, "doubling")


def test_a_mutant_of_a_function_jax_traced_before_is_traced_anew():
    """`_body` is found as backward code although JAX traced it before (and will not
    call it again unless its caches are cleared), and its mutant is caught. Planted:
    without the clearing the same mutant survives."""
    check = lambda: fnn.check_layer(doubling(), (3,))  # noqa: E731
    assert check().passed  # JAX has traced `_body` now
    code = doubling.__code__.co_consts
    backward = next(c for c in code if getattr(c, "co_name", "") == "backward")
    named = [site_at(__file__, backward.co_qualname, backward.co_firstlineno)]
    sites = backward_sites(named, exercise({"check": check}, [__file__]))
    assert [s.function for s in sites] == ["_body", "doubling.<locals>.backward"]
    line = _body.__code__.co_firstlineno
    (minus,) = [m for m in mutants_of(__file__, "_body", line, globals()) if "g - g" in m.after]
    assert run_mutant(minus, _body, [("check", check)]).status == "caught"
    assert check().passed  # traced again, the original
    with mock.patch.object(fnn.check.mutants.weakref, "getweakrefcount", lambda f: 0):
        assert run_mutant(minus, _body, [("check", check)]).status == "survived"
    assert check().passed


WEAK_LAYER = """
import jax.numpy as jnp
import fnn


def scale():
    def init(key, in_shape, dtype=jnp.float32):
        return tuple(in_shape), {"a": jnp.ones((in_shape[-1],), dtype)}

    def forward(params, x):
        return params["a"][None, :] * x, x

    def backward(params, x, dy):
        da = jnp.sum(dy * x, axis=0)  # dL/da = Σ_batch dy ⊙ x
        dx = params["a"][None, :] * dy  # dL/dx = a ⊙ dy
        return {"a": da}, dx

    return fnn.Layer(init, forward, backward, "scale")


def weak():  # zero inputs: the check point cannot see da's mistakes
    zeros = lambda key, shape, dtype: jnp.zeros(shape, dtype)
    return {"layer": scale(), "make_input": zeros, "in_shape": (3,)}


def not_a_layer():
    return 3


halve_back = lambda params, y, dy: ({}, dy / 2)  # y = x/2: dL/dx = dy/2


def module_lambda():  # its backward a lambda at module level: no name to swap code into
    return fnn.Layer(lambda k, s, d: (s, {}), lambda p, x: (x / 2, None), halve_back, "h")
"""


def test_a_check_point_that_hides_a_mistake_leaves_survivors(capsys, tmp_path):
    """With zero inputs the check sees nothing of `da = Σ dy ⊙ x`: its mistakes survive;
    `fnn check --mutate` lists them and exits 1."""
    path = tmp_path / "weak_layer.py"
    path.write_text(WEAK_LAYER)
    assert main(["check", "--mutate", f"{path}:weak"]) == 1
    out = capsys.readouterr().out
    survived = [line for line in out.splitlines() if "SURVIVED" in line]
    assert any("da = 2 * jnp.sum(dy * x, axis=0)" in line for line in survived), out
    assert any('return {"a": -da}, dx' in line for line in survived), out
    assert not any("dx =" in line for line in survived), out  # dx = a ⊙ dy is still seen
    assert "mutation score" in out


# ----------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    "spec, extra, message",
    [
        ("missing.py:scale", ["--in-shape", "3"], "there is no file"),
        ("{here}:nothing", ["--in-shape", "3"], "has no function 'nothing'"),
        ("{weak}:not_a_layer", ["--in-shape", "3"], "returned int; expected an fnn Layer"),
        ("{weak}:module_lambda", ["--in-shape", "3"], "a lambda at module level cannot be"),
        ("{here}:scale", [], "needs the input shape (set with --in-shape)"),
        ("{here}:scale", ["dense", "--in-shape", "3"], "not the built-in items"),
        ("{here}", ["--in-shape", "3"], "takes FILE.py:FUNCTION"),
    ],
)
def test_bad_mutate_specs_exit_2(spec, extra, message, capsys, tmp_path):
    (tmp_path / "weak_layer.py").write_text(WEAK_LAYER)
    spec = spec.format(here=__file__, weak=tmp_path / "weak_layer.py")
    assert main(["check", "--mutate", spec, *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_layer_of_fnn_builtins_only_has_nothing_to_mutate():
    with pytest.raises(fnn.core.SettingError, match="no backward code of its own"):
        mutation_test(fnn.layers.dense(2), (3,))


# ----------------------------------------------------------------------------- built-ins


@pytest.mark.slow
def test_every_mutant_of_dense_is_caught_by_the_catalogue():
    """The catalogue's dense items against every mutant of dense's backward, the
    first one first (it must change what runs: a mutant that never reached the traced
    program would survive). `builtin_mutants` watches and mutates dense.py alone here:
    the mutants of every other built-in (about 390, ~6 s of CPU to generate) are
    benchmarks/mutation.py's."""
    names = ["dense", "dense_no_bias", "dense_3d_input"]
    checks = {n: (lambda n=n: fnn.check.CASES[n].run("float64")) for n in names}
    dense_py = fnn.layers.dense.__code__.co_filename
    with mock.patch.object(fnn.check.mutate, "builtin_files", lambda: [dense_py]):
        everything, exercised = builtin_mutants(checks)
    assert {site.file for site, *_ in everything} == {dense_py}
    assert {site.function for site, *_ in everything} >= {
        "dense.<locals>.backward",
        "dense.<locals>.per_example_backward",
    }
    # the batch backward's mutants (benchmarks/mutation.py runs every function's)
    dense = [m for m in everything if m[0].function == "dense.<locals>.backward"]
    for site, mutant, top, running in dense:
        runs = [(n, lambda n=n: fnn.check.run_checks([n])[0]) for n in running]
        result = run_mutant(mutant, top, runs)
        assert result.status == "caught", (site.function, mutant.after, result)
    assert fnn.check.run_checks(["dense"])[0].passed  # restored
