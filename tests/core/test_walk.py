"""A combinator is one `Walk`: a user's own combinator, written as the docs write it, gets
its backward, per-example backward, state, trace and summary derived, each checked here
against JAX; a walk that skips a layer or calls one twice is refused by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for

import fnn
from fnn.bench.summary import summary
from fnn.walk import combinator, layer_path, same_shapes


def parallel_sum(f, g):
    """`y = f(x) + g(x)`: the docs' example of a user's own combinator."""
    return combinator(
        fnn.core.Walk(
            (f, g),
            forward=lambda call, x: call(0, x) + call(1, x),  # y = f(x) + g(x)
            backward=lambda call, dy: call(0, dy) + call(1, dy),  # dx = f'ᵀdy + g'ᵀdy
            shapes=lambda call, s: same_shapes("parallel_sum", call(0, s), call(1, s)),
        ),
        f"sum({f.name}, {g.name})",
    )


NET = fnn.serial(fnn.dense(4), parallel_sum(fnn.serial(fnn.dense(4), fnn.tanh()), fnn.dense(4)))
LOSS = fnn.mean_squared_error()


@pytest.fixture(scope="module")
def problem():
    params = params_for(NET, (3,), jnp.float64)
    return params, normal((5, 3)), normal((5, 4), seed=1)


def test_a_users_combinator_is_checked_against_jax_vjp():
    result = fnn.check_layer(parallel_sum(fnn.dense(3), fnn.tanh()), (3,), dtype="float64")
    assert result.passed, result


def test_the_derived_backward_equals_jax_grad(problem):
    params, x, y = problem

    @jax.jit  # both in one program (run eagerly, every op would compile on its own)
    def run(params, x, y):
        reference = jax.value_and_grad(lambda p: LOSS.forward(fnn.apply(NET, p, x), y)[0])
        return fnn.value_and_grad(NET, LOSS)(params, x, y), reference(params)

    (value, grads), (ref_value, ref) = run(params, x, y)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    for mine, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)


def test_the_trace_sees_inside_a_users_combinator(problem):
    params, x, y = problem
    trace = fnn.backward_trace(NET, LOSS, params, x, y)
    paths = [layer.path for layer in trace.layers]
    assert paths == ["net", "net[0]", "net[1]", "net[1][0]", "net[1][0][0]", "net[1][0][1]",
                     "net[1][1]"]  # fmt: skip
    # g's dy is the sum's dy: both branches see it whole (y = f(x) + g(x))
    np.testing.assert_array_equal(trace["net[1][1]"].dy, trace["net[1]"].dy)
    np.testing.assert_allclose(
        trace["net[1]"].dx, trace["net[1][0]"].dx + trace["net[1][1]"].dx, rtol=1e-14
    )
    assert trace["net[1][1]"].select(params) is params[1][1]


def test_the_summary_has_a_row_per_leaf_inside_a_users_combinator():
    rows = summary(NET, (3,), batch=4).rows
    assert [row.path for row in rows] == ["net[0]", "net[1][0][0]", "net[1][0][1]", "net[1][1]"]


def test_per_example_gradients_come_with_the_walk(problem):
    params, x, y = problem

    def one(p, xi, yi):
        return jax.grad(lambda p: LOSS.forward(fnn.apply(NET, p, xi[None]), yi[None])[0])(p)

    @jax.jit  # both in one program
    def run(params, x, y):
        reference = jax.vmap(one, in_axes=(None, 0, 0))(params, x, y)
        return fnn.per_example_grads(NET, LOSS, params, x, y), reference

    grads, ref = run(params, x, y)
    for mine, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-12, atol=1e-14)


def test_state_and_keys_reach_the_layers_of_a_users_combinator():
    net = parallel_sum(fnn.serial(fnn.dense(3), fnn.batch_norm()), fnn.dropout(0.5))
    assert net.takes_ctx and net.init_state is not None and net.per_example_backward is None
    params = params_for(net, (3,), jnp.float64)
    state = fnn.init_state(net, params)
    assert len(state) == 2 and state[1] == ()  # one entry a layer, () for dropout
    ctx = fnn.Ctx(True, jax.random.PRNGKey(0), state)
    result = fnn.check_layer(net, (3,), dtype="float64", ctx=lambda p: ctx)
    assert result.passed, result


def test_a_walk_that_skips_or_repeats_a_layer_is_refused():
    f, g = fnn.dense(3), fnn.dense(3)
    skips = combinator(fnn.core.Walk((f, g), lambda call, x: call(0, x), lambda call, dy: dy), "s")
    # under jit: the walk is refused as it is traced (run eagerly, the layers it did call
    # would compile op by op before the refusal)
    with pytest.raises(ValueError, match="call each layer exactly once; layer 1 0 times"):
        jax.jit(lambda p, x: fnn.apply(skips, p, x))(
            params_for(skips, (3,), jnp.float64), normal((2, 3))
        )
    twice = combinator(
        fnn.core.Walk(
            (f, g),
            lambda call, x: call(1, call(0, x)),
            lambda call, dy: call(0, call(0, dy)),  # layer 0 twice, layer 1 never
        ),
        "twice",
    )
    params = params_for(twice, (3,), jnp.float64)
    with pytest.raises(ValueError, match="backward walk must call each layer exactly once"):
        jax.jit(fnn.value_and_grad(twice, LOSS))(params, normal((2, 3)), normal((2, 3), seed=1))


def test_a_walk_must_say_how_it_holds_its_layers():
    with pytest.raises(ValueError, match="holds must be one of"):
        combinator(fnn.core.Walk((fnn.relu(),), lambda c, x: c(0, x), lambda c, d: c(0, d),
                                 holds="dict"), "x")  # fmt: skip
    with pytest.raises(ValueError, match="'inner' needs one layer"):
        combinator(fnn.core.Walk((fnn.relu(), fnn.relu()), None, None, holds="inner"), "x")


def test_the_layer_path_format():
    assert layer_path(()) == "net" and layer_path((3, 0, 1)) == "net[3][0][1]"
