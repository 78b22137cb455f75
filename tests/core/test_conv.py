"""Convolution, pooling and flatten beyond their catalogue items (tests/check/test_catalogue.py):
forward references, shapes for every padding/stride/dilation, ties in max_pool, planted
bugs, bad input."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for
from helpers.planted import planted_bug
from jax import lax

import fnn
from fnn.layers.spatial import resolve_padding

KEY = jax.random.PRNGKey(0)


def _init_shapes(layer, in_shape, dtype):
    """(out_shape, params as shapes) from `layer.init`, traced by jax.eval_shape, not run."""
    out = {}

    def params_of(key):
        out["shape"], params = layer.init(key, in_shape, dtype)
        return params

    params = jax.eval_shape(params_of, KEY)
    return out["shape"], params


PADDINGS = ["SAME", "VALID", ((1, 2), (0, 3)), ((3, 0), (2, 2))]


@pytest.mark.slow  # 216 configurations, each traced four ways
def test_conv2d_init_shape_matches_the_forward_and_lax_for_every_padding():
    """For every size, kernel, stride, padding and dilation: init's out_shape = the
    forward's = lax.conv_general_dilated's with the same padding, and the backward's
    outputs are shaped like the inputs (shapes only, by jax.eval_shape). Where there is
    no output, init says so."""
    for size, kernel, stride, padding, dilation in itertools.product(
        (5, 6, 7), (1, 2, 3), (1, 2, 3), PADDINGS, (1, 2)
    ):
        layer = fnn.conv2d(4, kernel, stride=stride, padding=padding, dilation=dilation)
        in_shape = (size, size + 1, 2)
        x = jax.ShapeDtypeStruct((2, *in_shape), jnp.float32)
        W = jax.ShapeDtypeStruct((kernel, kernel, 2, 4), jnp.float32)
        reference = jax.eval_shape(
            lambda x, W, s=stride, p=padding, d=dilation: lax.conv_general_dilated(
                x,
                W,
                (s, s),
                p,
                rhs_dilation=(d, d),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            ),
            x,
            W,
        )
        if min(reference.shape) < 1:
            with pytest.raises(ValueError, match="no output"):
                _init_shapes(layer, in_shape, jnp.float32)
            continue
        out_shape, params = _init_shapes(layer, in_shape, jnp.float32)
        y, residuals = jax.eval_shape(layer.forward, params, x)
        assert y.shape == (2, *out_shape) == reference.shape, (size, kernel, stride, padding)
        dparams, dx = jax.eval_shape(layer.backward, params, residuals, y)
        assert dx.shape == x.shape and dparams["W"].shape == params["W"].shape


def test_conv2d_too_small_an_input_names_the_sizes():
    with pytest.raises(ValueError, match=r"conv2d\(4, 5x5, VALID\).*\(3, 3\).*no output"):
        fnn.conv2d(4, 5, padding="VALID").init(KEY, (3, 3, 1))


# ------------------------------------------------------------------ forward references


@pytest.mark.parametrize("stride, padding, dilation", [(1, "SAME", 1), (2, "VALID", 2)])
def test_conv2d_forward_is_the_textbook_sum(stride, padding, dilation):
    """y[b, i, j, co] = Σ x[b, i·s + p·d − lo, j·s + q·d − lo, ci]·W[p, q, ci, co] + b[co]."""
    layer = fnn.conv2d(3, 2, stride=stride, padding=padding, dilation=dilation)
    params = {**params_for(layer, (5, 6, 2)), "b": normal((3,), seed=3)}
    x = np.asarray(normal((2, 5, 6, 2)))
    y = np.asarray(jax.jit(lambda params, x: fnn.apply(layer, params, x))(params, x))
    W, b = np.asarray(params["W"]), np.asarray(params["b"])
    (lo_h, _), (lo_w, _) = resolve_padding(padding, (5, 6), (2, 2), (stride,) * 2, (dilation,) * 2)
    expected = np.zeros_like(y)
    for i, j in np.ndindex(*y.shape[1:3]):
        for p, q in np.ndindex(2, 2):
            h, w = i * stride + p * dilation - lo_h, j * stride + q * dilation - lo_w
            if 0 <= h < 5 and 0 <= w < 6:
                expected[:, i, j, :] += x[:, h, w, :] @ W[p, q]
    np.testing.assert_allclose(y, expected + b, rtol=1e-12, atol=1e-12)


def test_conv1d_is_conv2d_with_a_unit_height():
    c1 = fnn.conv1d(3, 3, stride=2, padding="SAME", dilation=2)
    c2 = fnn.conv2d(3, (1, 3), stride=(1, 2), padding="SAME", dilation=(1, 2))
    p1 = params_for(c1, (9, 2))
    p2 = {"W": p1["W"][None], "b": p1["b"]}
    x = normal((2, 9, 2))
    dy = normal((2, 5, 3), seed=1)

    @jax.jit  # both layers' forwards and backwards in one program
    def run(p1, p2, x, dy):
        (y1, r1), (y2, r2) = c1.forward(p1, x), c2.forward(p2, x[:, None])
        return y1, y2, c1.backward(p1, r1, dy), c2.backward(p2, r2, dy[:, None])

    y1, y2, (g1, dx1), (g2, dx2) = jax.device_get(run(p1, p2, x, dy))
    np.testing.assert_allclose(y1, y2[:, 0])
    np.testing.assert_allclose(dx1, dx2[:, 0], rtol=1e-12)
    np.testing.assert_allclose(g1["W"], g2["W"][0], rtol=1e-12)


POOLS = [(2, 2, "VALID"), (3, 1, "SAME"), (3, 2, "SAME"), (2, 1, ((1, 1), (0, 1)))]


def _reduce_window_max(x, window, stride, pads):
    return lax.reduce_window(
        x,
        -jnp.inf,
        lax.max,
        (1, window, window, 1),
        (1, stride, stride, 1),
        [(0, 0), *pads, (0, 0)],
    )


@pytest.mark.parametrize("window, stride, padding", POOLS)
def test_max_pool_matches_reduce_window_and_its_vjp_with_ties(window, stride, padding):
    """Inputs drawn from {0, 1, 2}: most windows hold tied maxima. The backward routes dy
    to the first maximum in row-major window order, as jax.vjp of reduce_window does."""
    x = np.random.default_rng(0).integers(0, 3, (2, 7, 6, 2)).astype(np.float64)
    layer = fnn.max_pool(window, stride, padding)
    pads = resolve_padding(padding, (7, 6), (window,) * 2, (stride,) * 2)
    y_shape = jax.eval_shape(layer.forward, (), x)[0].shape
    dy = normal(y_shape, seed=2)

    @jax.jit  # fnn's forward and backward and the reference's, in one program
    def run(x, dy):
        y, residuals = layer.forward((), x)
        reference, vjp = jax.vjp(lambda x: _reduce_window_max(x, window, stride, pads), x)
        return y, residuals, layer.backward((), residuals, dy)[1], reference, vjp(dy)[0]

    y, residuals, dx, reference, reference_dx = run(x, dy)
    np.testing.assert_array_equal(y, reference)
    np.testing.assert_allclose(dx, reference_dx, atol=1e-12)
    assert residuals.argmax.dtype == jnp.int8 and residuals.in_shape.size == 0


def test_max_pool_propagates_nan():
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 1, 1, 0] = np.nan
    y = np.asarray(jax.jit(lambda x: fnn.apply(fnn.max_pool(2), (), x))(x))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[0, 1, 1, 0])


@pytest.mark.parametrize("window, stride, padding", POOLS)
def test_avg_pool_divides_by_the_real_elements_of_each_window(window, stride, padding):
    x = normal((2, 7, 6, 2))
    pads = resolve_padding(padding, (7, 6), (window,) * 2, (stride,) * 2)

    def window_sum(x):
        return lax.reduce_window(
            x, 0.0, lax.add, (1, window, window, 1), (1, stride, stride, 1), [(0, 0), *pads, (0, 0)]
        )

    @jax.jit  # the layer and the reference sums, in one program
    def run(x):
        count = window_sum(jnp.ones((1, 7, 6, 1), jnp.float64))  # padding adds nothing
        return fnn.avg_pool(window, stride, padding).forward((), x)[0], window_sum(x), count

    y, sums, count = run(x)
    np.testing.assert_allclose(y, sums / count, rtol=1e-12)
    if padding == "VALID":
        np.testing.assert_allclose(y, sums / window**2, rtol=1e-12)


def test_flatten_is_row_major_and_its_backward_reshapes_back():
    x = normal((2, 3, 4, 5))
    layer = fnn.flatten()

    @jax.jit
    def run(x):
        y, residuals = layer.forward((), x)
        return y, layer.backward((), residuals, y)[1]

    y, dx = run(x)
    np.testing.assert_array_equal(y, np.asarray(x).reshape(2, 60))
    np.testing.assert_array_equal(dx, x)


# ------------------------------------------------------------------------ planted bugs


def conv2d_bug(kind: str, stride: int = 1) -> fnn.Layer:
    """fnn.conv2d(3, 3) with one classic mistake planted in its backward."""
    good = fnn.conv2d(3, 3, stride=stride)

    def backward(params, x, dy):
        W = params["W"]
        n, o = x.shape[1:3], dy.shape[1:3]
        pads = resolve_padding("SAME", n, (3, 3), (stride, stride))
        W_used = W if kind == "unflipped_kernel" else jnp.flip(W, axis=(0, 1))
        lhs_dilation = (1, 1) if kind == "stride_ignored" else (stride, stride)
        dx_pads = [
            (2 - lo, ni + lo - (oi - 1) * stride - 1)
            for ni, oi, (lo, _) in zip(n, o, pads, strict=True)
        ]
        if kind == "stride_ignored":  # no zeros between dy's entries; padded to keep x's shape
            dx_pads = [
                (2 - lo, ni + lo - oi - 1 + 1) for ni, oi, (lo, _) in zip(n, o, pads, strict=True)
            ]
        if kind == "padding_off_by_one":
            dx_pads = [(lo + 1, hi - 1) for lo, hi in dx_pads]
        dx = lax.conv_general_dilated(
            dy, W_used, (1, 1), dx_pads, lhs_dilation=lhs_dilation,
            dimension_numbers=("NHWC", "HWOI", "NHWC"),
        )  # fmt: skip
        dw_pads = [
            (lo, 2 + (oi - 1) * stride + 1 - lo - ni)
            for ni, oi, (lo, _) in zip(n, o, pads, strict=True)
        ]
        dW = lax.conv_general_dilated(
            x, dy, (1, 1), dw_pads, rhs_dilation=(stride, stride),
            dimension_numbers=("CHWN", "IHWO", "HWNC"),
        )  # fmt: skip
        db = jnp.sum(dy, axis=(0, 1, 2))
        if kind == "dropped_bias_gradient":
            db = jnp.zeros_like(db)
        return {"W": dW, "b": db}, dx

    return good._replace(backward=backward, name=f"conv2d[{kind}]")


def test_the_planted_bug_harness_is_correct_without_a_bug():
    for stride in (1, 2):
        result = fnn.check_layer(conv2d_bug("none", stride), (6, 6, 2), batch=2)
        assert result.passed, str(result)


@planted_bug("conv2d")
@pytest.mark.parametrize(
    "kind, stride",
    [
        ("unflipped_kernel", 1),
        ("stride_ignored", 2),
        ("padding_off_by_one", 1),
        ("dropped_bias_gradient", 1),
    ],
)
def test_checker_catches_planted_conv2d_bugs(kind, stride):
    result = fnn.check_layer(conv2d_bug(kind, stride), (6, 6, 2), batch=2)
    assert not result.passed, str(result)
    assert result.max_rel_err > 0.1
    assert result.finite_differences.startswith("failed")
    bad = {leaf for leaf, e in result.leaves.items() if e["rel"] > 1e-10}
    assert bad == ({"params['b']"} if kind == "dropped_bias_gradient" else {"x"})


@planted_bug("max_pool")
def test_checker_catches_a_max_pool_that_spreads_dy_over_the_window():
    good = fnn.max_pool(2)
    spread = fnn.avg_pool(2)

    def backward(params, residuals, dy):
        _, dx = spread.backward((), residuals.in_shape, 4 * dy)  # dy to every element
        return (), dx

    result = fnn.check_layer(good._replace(backward=backward), (4, 4, 1), batch=2)
    assert not result.passed and result.leaves["x"]["rel"] > 0.1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "layer, in_shape, x_shape, expected",
    [
        (fnn.conv2d(4, 3), (6, 6, 2), (2, 6, 6, 3), "(batch, height, width, 2)"),
        (fnn.conv2d(4, 3), (6, 6, 2), (2, 36, 2), "(batch, height, width, 2)"),
        (fnn.conv1d(4, 3), (7, 2), (2, 7, 1, 2), "(batch, width, 2)"),
        (fnn.max_pool(2), (6, 6, 2), (2, 36), "(batch, height, width, channels)"),
        (fnn.avg_pool((2,)), (6, 2), (2, 6, 6, 2), "(batch, width, channels)"),
    ],
)
def test_wrong_rank_or_channels_name_the_layer_the_expected_and_the_received_shape(
    layer, in_shape, x_shape, expected
):
    params = params_for(layer, in_shape, jnp.float32)
    with pytest.raises(ValueError) as info:
        layer.forward(params, np.ones(x_shape, np.float32))
    message = str(info.value)
    assert message.startswith(layer.name) and expected in message and str(x_shape) in message


def test_wrong_rank_in_a_network_names_the_layer_index():
    net = fnn.cnn(10)
    params = jax.eval_shape(lambda: fnn.init(net, KEY, (8, 8, 1)))  # the check needs shapes
    with pytest.raises(ValueError, match=r"got \(4, 64\)\nin layer 0 \(conv2d\(16, 3x3, SAME\)\)"):
        fnn.apply(net, params, jnp.ones((4, 64), jnp.float32))


def test_init_with_a_flat_shape_says_what_it_needs():
    with pytest.raises(ValueError, match=r"conv2d.*\(height, width, channels\).*got \(64,\)"):
        fnn.conv2d(4, 3).init(KEY, (64,))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: fnn.conv2d(0, 3), "out_channels"),
        (lambda: fnn.conv2d(4, (3, 3, 3)), "kernel_size"),
        (lambda: fnn.conv2d(4, 3, stride=0), "stride"),
        (lambda: fnn.conv2d(4, 3, padding="FULL"), "padding"),
        (lambda: fnn.conv2d(4, 3, padding=((1, 1),)), "padding"),
        (lambda: fnn.conv1d(4, 3, padding=(-1, 0)), "padding"),
        (lambda: fnn.max_pool((2, 2, 2)), "window"),
        (lambda: fnn.cnn(10, channels=(8,), strides=(1, 2)), "strides"),
    ],
)
def test_invalid_hyperparameters(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_integer_input_is_a_type_error():
    layer = fnn.conv2d(2, 3)
    params = params_for(layer, (4, 4, 1), jnp.float32)
    with pytest.raises(TypeError, match="floating-point"):
        fnn.apply(layer, params, np.ones((1, 4, 4, 1), np.int32))


# ---------------------------------------------------------------------------- training


@pytest.mark.slow  # a whole network's pre-training gradient check (the catalogue's cnn is slow too)
def test_train_config_model_cnn_builds_the_cnn_on_images_and_refuses_flat_data(tmp_path):
    """`fnn train --model cnn`: digits stay (8, 8, 1), the network's gradients pass the
    pre-training check; a flat data set is a clear error (exit code 2 from the CLI)."""
    from fnn import experiment
    from fnn.cli import main

    run = experiment.prepare(experiment.TrainConfig(model="cnn", epochs=1))
    assert run.data.x_train.shape[1:] == (8, 8, 1)
    assert run.net.name.startswith("serial(conv2d(16, 3x3, SAME), relu, conv2d(32, 3x3, stride")
    assert experiment.verify_gradients(run, examples=8).passed
    with pytest.raises(ValueError, match=r"the cnn model needs an image data set.*\(4,\)"):
        experiment.prepare(experiment.TrainConfig(model="cnn", dataset="iris"))
    args = ["train", "--model", "cnn", "--dataset", "iris", "--out", str(tmp_path / "iris")]
    assert main(args) == 2


@pytest.mark.slow  # prepares a whole run: compiles the 28x28 cnn's init
def test_train_config_model_cnn_takes_mnist_files_as_28x28x1(tmp_path):
    """MNIST files in --data-dir (a Keras-style npz here, random pixels) stay 28×28×1."""
    from fnn import experiment

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (64, 28, 28), np.uint8),
        y_train=np.arange(64, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (20, 28, 28), np.uint8),
        y_test=np.arange(20, dtype=np.uint8) % 10,
    )
    config = experiment.TrainConfig(model="cnn", dataset="mnist", data_dir=str(tmp_path))
    run = experiment.prepare(config)
    assert run.data.x_train.shape == (64, 28, 28, 1)
    sizes = [np.size(leaf) for leaf in jax.tree.leaves(run.params)]
    assert sum(sizes) == 160 + 4640 + 14 * 14 * 32 * 64 + 64 + 650  # conv, conv, dense, dense


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: fnn.max_pool(2, 1, ((2, 0), (0, 0))), r"max_pool\(2x2.*padding \[\(2, 0\)"),
        (lambda: fnn.avg_pool(2, 1, ((0, 0), (0, 2))), r"avg_pool\(2x2.*smaller than the window"),
        (lambda: fnn.max_pool((3,), 1, ((0, 3),)), r"max_pool\(3.*window \(3,\)"),
    ],
)
def test_pooling_padding_that_reaches_the_window_is_refused(make, message):
    """A window lying wholly in padding holds no input (max −∞, average 0/0)."""
    with pytest.raises(ValueError, match=message):
        make()


def test_pooling_padding_below_the_window_and_same_valid_still_build():
    for layer in (fnn.max_pool(3, 1, ((2, 2), (1, 1))), fnn.avg_pool(2, 2, "SAME"),
                  fnn.max_pool(2, 2, "VALID")):  # fmt: skip
        assert isinstance(layer, fnn.Layer)
