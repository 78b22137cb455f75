"""Numerical robustness of the built-ins at extreme float32 inputs.

Every activation (`fnn.layers.ACTIVATIONS`), the losses, `lm_cross_entropy`, `layer_norm`,
`rms_norm`, `batch_norm` in training, `multi_head_attention` (dense and blockwise) and the
GPT's head run on the inputs where stable and naive formulas part ways: logits of ±80
(e^±80 is near the ends of float32's normal range) and ±1e4 (e^1e4 overflows),
probabilities exactly 0 and 1, constant rows and batches (zero variance; a row of zeros
for rms_norm), blockwise attention whose last block is mostly padding, and T = 512 in
blocks of 64. Each hand-written forward and backward, in float32, is compared with

- `jax.vjp` (or `jax.grad`) of the same forward, in float32: the same formulas,
  differentiated by JAX;
- an independent formulation in float64 (`jax.nn`'s functions, `jax.nn.logsumexp`,
  `jax.nn.dot_product_attention`, a transcription of the definition) of the same float32
  inputs: the true answer, to float32's precision.

The assertion, everywhere: fnn's result is finite wherever the reference's is, and within
the tolerance stated at each test. Where a reference is NaN or infinite (the textbook
formulas: `1/(1 + e^−x)`, `log Σ e^z`, the cross-entropy of `σ(z)`, probabilities 0 and
1 without a clip), the tests say what fnn gives, and that it is the float64 answer. What
fnn clips or guards on purpose is pinned as documented: `binary_cross_entropy`'s clip to
`[ε, 1 − ε]`, and the `ε` of the normalisations, which makes a constant row `x̂ = 0`.

Each group runs as ONE compiled program, shared by the tests that read it (compiles are
the cost). The fast tier holds the activations, the losses and the normalisations; the
LM head, attention (layers and the blockwise core) and the GPT, and the planted bugs
that show each check failing on a textbook implementation, are in the slow tier.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers.battery import normal, params_for

import fnn
from fnn.core import Loss
from fnn.layers import ACTIVATIONS, flash_attention
from fnn.layers.activations import elementwise
from fnn.lm.head import HeadInput, tied_logits

F32, F64 = jnp.float32, jnp.float64
EPS32 = float(np.finfo(np.float32).eps)  # 2⁻²³, the spacing of float32 at 1


def up(tree):
    """Every floating leaf in float64: the reference's inputs are fnn's float32 inputs."""
    return jax.tree.map(
        lambda a: a.astype(F64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def mismatches(got, want, *, rtol=0.0, atol=0.0, of_max=0.0):
    """What is wrong with `got` (fnn's) against `want` (a reference), as messages (none
    when they agree): entries where `want` is finite and `got` is not, and entries where
    `|got − want| > atol + rtol·|want| + of_max·max|want|` (the max over `want`'s finite
    entries). Where `want` is NaN or infinite nothing is asserted here: the tests say what
    fnn gives there."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    finite = np.isfinite(want)
    scale = np.max(np.abs(want[finite]), initial=0.0)
    problems = []
    lost = finite & ~np.isfinite(got)
    if lost.any():
        i = tuple(np.argwhere(lost)[0])
        problems.append(
            f"not finite where the reference is, at {lost.sum()} entries, e.g. {i}: "
            f"got {got[i]}, want {want[i]}"
        )
    err = np.where(finite & np.isfinite(got), np.abs(got - want), 0.0)
    excess = err - (atol + rtol * np.abs(want) + of_max * scale)
    if (excess > 0).any():
        i = np.unravel_index(np.argmax(excess), excess.shape)
        problems.append(
            f"{(excess > 0).sum()} entries beyond the tolerance, worst at {i}: got {got[i]}, "
            f"want {want[i]} (error {err[i]:.3g}, allowed {err[i] - excess[i]:.3g})"
        )
    return problems


def tree_mismatches(got, want, **tolerance):
    """`mismatches` leaf by leaf, each message prefixed by the leaf's path."""
    got_leaves = jax.tree_util.tree_leaves_with_path(got)
    want_leaves = jax.tree.leaves(want)
    assert len(got_leaves) == len(want_leaves)
    return [
        f"{jax.tree_util.keystr(path)}: {problem}"
        for (path, g), w in zip(got_leaves, want_leaves, strict=True)
        for problem in mismatches(g, w, **tolerance)
    ]


def all_finite(tree):
    return all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(tree))


# ------------------------------------------------------------------------ activations
# Rows: both extremes at once; 1e4 against near ties; a row entirely near −1e4 (softmax
# must shift by the row's max); ±80 with near ties. No entry is at a kink (x = 0).
LOGITS = np.array(
    [
        [-1e4, -80.0, -1.5, 0.5, 80.0, 1e4],
        [1e4, 9998.0, -1e4, 80.0, -80.0, 3.0],
        [-1e4, -1e4, -9999.0, -1e4, -9999.5, -1e4],
        [80.0, 79.0, -80.0, -79.5, 80.0, 0.25],
    ],
    np.float32,
)

ACTIVATION_REFERENCES = {  # float64, from jax.nn (default hyperparameters, as ACTIVATIONS)
    "identity": lambda x: x,
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda x: jax.nn.leaky_relu(x, 0.01),
    "elu": lambda x: jax.nn.elu(x, 1.0),
    "softplus": jax.nn.softplus,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "silu": jax.nn.silu,
    "softmax": lambda x: jax.nn.softmax(x, axis=-1),
    "log_softmax": lambda x: jax.nn.log_softmax(x, axis=-1),
}

TEXTBOOK = {  # the formulas as written on paper, in float32: where they fail, fnn must not
    "sigmoid": lambda x: 1 / (1 + jnp.exp(-x)),
    "tanh": lambda x: (jnp.exp(x) - jnp.exp(-x)) / (jnp.exp(x) + jnp.exp(-x)),
    "softplus": lambda x: jnp.log(1 + jnp.exp(x)),
    "silu": lambda x: x / (1 + jnp.exp(-x)),
    "softmax": lambda x: jnp.exp(x) / jnp.sum(jnp.exp(x), axis=-1, keepdims=True),
    "log_softmax": lambda x: x - jnp.log(jnp.sum(jnp.exp(x), axis=-1, keepdims=True)),
}


def _vjp(f, *args, dy):
    y, vjp = jax.vjp(f, *args)
    return y, vjp(dy)


def run_activations(layers, x, dy):
    """For each `name: layer`: fnn's `(y, dx)`, jax.vjp's of fnn's forward, the float64
    reference's (`ACTIVATION_REFERENCES[name]`) and, where there is one, the textbook
    formula's in float32 (else None): ONE compiled program."""

    @jax.jit
    def run(x, dy):
        out = {}
        for name, layer in layers.items():
            y, residuals = layer.forward((), x)
            fnn_ = (y, layer.backward((), residuals, dy)[1])
            jax_ = _vjp(lambda x, layer=layer: layer.forward((), x)[0], x, dy=dy)
            ref = _vjp(ACTIVATION_REFERENCES[name], up(x), dy=up(dy))
            textbook = None
            if name in TEXTBOOK:
                y_book, (dx_book,) = _vjp(TEXTBOOK[name], x, dy=dy)
                textbook = (y_book, dx_book)
            out[name] = (fnn_, (jax_[0], jax_[1][0]), (ref[0], ref[1][0]), textbook)
        return out

    return jax.device_get(run(x, dy))


@functools.cache
def activations():
    layers = {name: make() for name, make in ACTIVATIONS.items()}
    return run_activations(layers, LOGITS, normal(LOGITS.shape, F32, seed=1))


def activation_problems(results, name, dy):
    """The mismatches of one activation's y and dx against jax.vjp (float32) and the
    float64 reference. Tolerance: y within 4ε·|y| + 1e-6 (1e-6: what a saturating function
    such as tanh or softmax may differ from its float64 value near 0 or 1); dx within
    4ε·|dx| + 1e-6·max|dy|·(row length): a derivative bounded by ~1.1 (softmax's rows sum
    |dy|) recomputed from a rounded output (tanh's 1 − y², elu's y + α) is off by ~ε·max|dy|
    absolutely, however small it is."""
    (y, dx), (y_jax, dx_jax), (y_ref, dx_ref), _ = results[name]
    atol_dx = 1e-6 * np.max(np.abs(dy)) * dy.shape[-1]
    problems = []
    for what, (y_want, dx_want) in (("jax.vjp", (y_jax, dx_jax)), ("float64", (y_ref, dx_ref))):
        problems += [f"y vs {what}: {p}" for p in mismatches(y, y_want, rtol=4 * EPS32, atol=1e-6)]
        problems += [
            f"dx vs {what}: {p}" for p in mismatches(dx, dx_want, rtol=4 * EPS32, atol=atol_dx)
        ]
    return problems


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_at_logits_80_and_1e4_is_finite_and_agrees(name):
    results = activations()
    assert not activation_problems(results, name, normal(LOGITS.shape, F32, seed=1))
    (y, dx), _, (y_ref, dx_ref), _ = results[name]
    assert np.isfinite(y_ref).all() and np.isfinite(dx_ref).all()  # no excuses here
    assert np.isfinite(y).all() and np.isfinite(dx).all()


@pytest.mark.parametrize("name", list(TEXTBOOK))
def test_where_the_textbook_formula_fails_the_activation_gives_the_float64_answer(name):
    """The textbook formulas overflow at ±1e4 (e^1e4 = inf): their value or jax's
    gradient of it is NaN or infinite there. fnn's stable forms give the float64 value
    (compared to it above): the better answer."""
    (y, dx), _, (y_ref, dx_ref), (y_book, dx_book) = activations()[name]
    broken = ~np.isfinite(y_book) | ~np.isfinite(dx_book)
    assert broken.any(), "the textbook formula was expected to overflow at ±1e4"
    assert np.all(np.abs(LOGITS[broken.any(axis=-1)]).max(axis=-1) >= 1e4)  # only there
    assert np.isfinite(y[broken]).all() and np.isfinite(dx[broken]).all()


# ------------------------------------------------------------------------ losses
LABELS = np.array([5, 1, 2, 0], np.int32)  # the 1e4 entry, 9998, an entry near −1e4, 80
ONE_HOT = np.eye(6, dtype=np.float32)[LABELS]
SOFT = np.full(LOGITS.shape, 1 / 6, np.float32)  # the uniform distribution
BINARY = (np.arange(LOGITS.size).reshape(LOGITS.shape) % 2).astype(np.float32)  # 0 and 1 both
#   at every magnitude and sign: a confident right and a confident wrong answer each

LOSS_CASES = {  # name: (loss, pred, target, float64 reference of the value)
    "softmax_cross_entropy(labels)": (
        fnn.softmax_cross_entropy(),
        LOGITS,
        LABELS,
        lambda z, y: jnp.mean(
            jax.nn.logsumexp(z, axis=-1) - jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
        ),
    ),
    "softmax_cross_entropy(one-hot)": (
        fnn.softmax_cross_entropy(),
        LOGITS,
        ONE_HOT,
        lambda z, t: -jnp.mean(jnp.sum(t * jax.nn.log_softmax(z, axis=-1), axis=-1)),
    ),
    "softmax_cross_entropy(soft)": (
        fnn.softmax_cross_entropy(),
        LOGITS,
        SOFT,
        lambda z, t: -jnp.mean(jnp.sum(t * jax.nn.log_softmax(z, axis=-1), axis=-1)),
    ),
    "sigmoid_binary_cross_entropy": (
        fnn.sigmoid_binary_cross_entropy(),
        LOGITS,
        BINARY,
        lambda z, t: jnp.mean(jax.nn.softplus(z) - t * z),  # −t·log σ(z) − (1 − t)·log σ(−z)
    ),
    "mean_squared_error": (
        fnn.mean_squared_error(),
        LOGITS,
        -0.5 * LOGITS[::-1],
        lambda p, t: jnp.mean((p - t) ** 2),
    ),
    "huber": (
        fnn.huber(1.0),
        LOGITS,
        np.zeros_like(LOGITS),
        lambda p, t: jnp.mean(
            jnp.where(jnp.abs(p - t) <= 1, 0.5 * (p - t) ** 2, jnp.abs(p - t) - 0.5)
        ),
    ),
}

TEXTBOOK_LOSSES = {  # in float32, on probabilities: what the naive code computes
    "softmax_cross_entropy(labels)": lambda z, y: (
        -jnp.mean(jnp.log(TEXTBOOK["softmax"](z)[jnp.arange(z.shape[0]), y]))
    ),
    "sigmoid_binary_cross_entropy": lambda z, t: (
        -jnp.mean(
            t * jnp.log(TEXTBOOK["sigmoid"](z)) + (1 - t) * jnp.log(1 - TEXTBOOK["sigmoid"](z))
        )
    ),
}


def _fnn_and_jax(loss, pred, target):
    """fnn's (value, dpred) and jax.grad's of fnn's forward."""
    value, residuals = loss.forward(pred, target)
    fnn_ = (value, loss.backward(residuals, jnp.ones_like(value)))
    return fnn_, jax.value_and_grad(lambda p: loss.forward(p, target)[0])(pred)


def _loss_triple(loss, pred, target, reference):
    """fnn's (value, dpred), jax.grad's of fnn's forward (float32) and the float64
    reference's."""
    return *_fnn_and_jax(loss, pred, target), jax.value_and_grad(reference)(up(pred), up(target))


ZERO_TARGETS = np.array([[0.0], [1.0]], np.float32)  # targets for logits 0
P_CLIP = np.array([[0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 2**-24, 0.25]], np.float32)
T_CLIP = np.array([[0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0]], np.float32)


def _unclipped_bce(p, t):
    """binary_cross_entropy without its clip, and jax.grad of it."""
    return jax.value_and_grad(lambda p: -jnp.mean(t * jnp.log(p) + (1 - t) * jnp.log1p(-p)))(p)


def run_losses(cases, extras=True):
    """`run_losses(LOSS_CASES)`: every case's `_loss_triple`, the textbook losses' value
    and jax.grad, and (with `extras`) the two cases below that the references cannot
    take, sigmoid_binary_cross_entropy at 0 and binary_cross_entropy at 0 and 1: ONE
    compiled program."""
    arrays = {name: (pred, target) for name, (_, pred, target, _) in cases.items()}

    @jax.jit
    def run(arrays):
        out = {}
        for name, (pred, target) in arrays.items():
            loss, _, _, reference = cases[name]
            out[name] = _loss_triple(loss, pred, target, reference)
        for name, textbook in TEXTBOOK_LOSSES.items():
            if name in arrays:
                pred, target = arrays[name]
                out["textbook " + name] = jax.value_and_grad(textbook)(pred, target)
        if extras:
            out["sigmoid at 0"] = _fnn_and_jax(
                fnn.sigmoid_binary_cross_entropy(), jnp.zeros((2, 1), F32), ZERO_TARGETS
            )
            bce = fnn.binary_cross_entropy()
            out["bce clip"] = (*_fnn_and_jax(bce, P_CLIP, T_CLIP), _unclipped_bce(P_CLIP, T_CLIP))
        return out

    return jax.device_get(run(arrays))


@functools.cache
def losses():
    return run_losses(LOSS_CASES)


def loss_problems(triple, logit_scale, n):
    """Mismatches of a loss's value and gradient against jax.grad (float32) and float64.

    Tolerance, for logits up to `logit_scale` in magnitude, a mean of `n` terms: the value within
    4ε·|value|; the gradient within 4ε·|grad| + 8ε·(1 + scale)/n. The softmax inside is
    e^(z − logsumexp z), and `z − logsumexp z` carries float32's rounding of numbers of
    size `scale`, ε·scale absolutely, which moves each probability by that fraction of
    itself; a probability is at most 1, divided by the n of the mean."""
    (value, grad), *references = triple
    atol = 8 * EPS32 * (1 + logit_scale) / n
    problems = []
    for what, (v_want, g_want) in zip(("jax.grad", "float64"), references, strict=True):
        problems += [f"value vs {what}: {p}" for p in mismatches(value, v_want, rtol=4 * EPS32)]
        problems += [
            f"grad vs {what}: {p}" for p in tree_mismatches(grad, g_want, rtol=4 * EPS32, atol=atol)
        ]
    return problems


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_loss_at_logits_80_and_1e4_is_finite_and_agrees(name):
    triple = losses()[name]
    assert all_finite(triple[2])  # the float64 reference is finite: so must fnn be
    assert all_finite(triple[0])
    terms = LOGITS.shape[0] if name.startswith("softmax") else LOGITS.size  # the mean's n
    assert not loss_problems(triple, 1e4, terms)


@pytest.mark.parametrize("name", list(TEXTBOOK_LOSSES))
def test_where_the_textbook_loss_fails_the_loss_gives_the_float64_answer(name):
    """The cross-entropy of probabilities computed first (σ(z) or e^z/Σe^z, then a log)
    is infinite or NaN at logits of ±80 and ±1e4 (σ(80) = 1 in float32, e^1e4 = inf);
    the fused losses give the float64 value and gradient (asserted above)."""
    value, grad = losses()["textbook " + name]
    assert not (np.isfinite(value) and np.isfinite(grad).all())
    (fnn_value, fnn_grad), _, (ref_value, _) = losses()[name]
    assert np.isfinite(fnn_value) and np.isfinite(fnn_grad).all()
    assert fnn_value == pytest.approx(ref_value, rel=4 * EPS32)


def test_sigmoid_cross_entropy_at_logit_0_is_sigma_minus_t_where_jax_grad_of_its_formula_is_not():
    """At z = 0 the loss is smooth, with derivative (σ(0) − t)/N = (½ − t)/N; its stable
    formula `max(z, 0) − t·z + log(1 + e^−|z|)` has kinks there, where jax.grad takes
    one-sided or averaged derivatives of `max` and `|z|` and need not give ½ − t (this
    jax 0.10 gives 0 for t = 0). fnn's backward is the derivative itself: the better answer,
    asserted here; jax's is not."""
    (value, grad), _ = losses()["sigmoid at 0"]
    np.testing.assert_allclose(grad, (0.5 - ZERO_TARGETS) / 2, rtol=EPS32)
    assert value == pytest.approx(np.log(2), rel=EPS32)


# ------------------------------------------------------------------------ probabilities 0, 1
def test_binary_cross_entropy_clips_probabilities_0_and_1_as_documented():
    """The documented clip: p is clipped to [ε, 1 − ε], ε = float32's machine epsilon, so
    a certain wrong answer costs −log ε ≈ 15.9 (not ∞), a certain right one −log(1 − ε)
    ≈ ε (not 0), and the gradient is 0 wherever the clip is active, even where the target
    agrees and the unclipped loss has the finite derivative ±1/N: the price of the clip,
    documented. The unclipped formula, as jax computes it, is NaN or infinite at every
    one of p, t ∈ {0, 1} (0·log 0 is NaN); fnn's value is finite, and its gradient inside
    the clip is (p − t)/(p(1 − p))/N."""
    doc = " ".join(fnn.binary_cross_entropy.__doc__.split())
    assert "clipped to `[eps, 1 − eps]`" in doc and "the gradient is 0" in doc
    assert not bce_clip_problems(losses()["bce clip"])
    (_, _), _, (value_raw, grad_raw) = losses()["bce clip"]
    assert not np.isfinite(value_raw)
    assert not np.isfinite(grad_raw[0, :4]).any()


def bce_clip_problems(results):
    """What differs from the documented clip in `results = (fnn's (value, grad),
    jax.grad's of its forward, the unclipped loss's)` at `P_CLIP`, `T_CLIP`."""
    (value, grad), (value_jax, grad_jax), _ = results
    eps, n = EPS32, P_CLIP.size
    per_entry = [-np.log1p(-eps), -np.log(eps), -np.log(eps), -np.log1p(-eps)]  # p, t ∈ {0, 1}
    per_entry += [-np.log(eps), -np.log(eps), -np.log(0.25)]  # 1e-30, 1 − 2⁻²⁴ and 0.25
    expected = np.zeros_like(P_CLIP)
    expected[0, -1] = (0.25 - 1) / (0.25 * 0.75) / n  # the one entry inside the clip
    return (
        mismatches(value, np.mean(per_entry), rtol=1e-6)
        + mismatches(grad, expected, rtol=4 * eps)
        + mismatches(value_jax, value, rtol=eps)  # jax.grad of fnn's forward agrees
        + mismatches(grad_jax, grad, rtol=4 * eps)
    )


# ------------------------------------------------------------------------ normalisation
CONSTANTS = [0.0, 0.1, -80.0, 1e4, -1e4]  # rows (layer_norm) or features (batch_norm)
MIXED = [-1e4, -80.0, 0.5, 80.0, 1e4, 3.0]


def _norm_reference(params, x, axes, epsilon=1e-5):
    """The definition, in float64: (x − μ)/sqrt(var + ε) ⊙ scale + bias over `axes`."""
    mu = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=axes, keepdims=True)
    scale, bias = (params[k].reshape(1, -1) for k in ("scale", "bias"))  # x: (batch, F)
    return (x - mu) / jnp.sqrt(var + epsilon) * scale + bias


def _rms_reference(params, x, epsilon=1e-5):
    """The definition, in float64: x/sqrt(mean(x²) + ε) ⊙ scale over the last axis."""
    scale = params["scale"].reshape(1, -1)  # x: (batch, F)
    return x / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True) + epsilon) * scale


def run_norms(ln, bn, rms):
    """layer_norm and rms_norm on constant rows (and a mixed row; rms_norm's degenerate
    row is the zero one), batch_norm in training on constant features (a mixed one among
    them) and on a batch of one: fnn's `(y, grads, dx)`, jax.vjp's of fnn's forward and
    the float64 reference's, ONE compiled program."""
    width = len(MIXED)
    x_ln = np.array([[c] * width for c in CONSTANTS] + [MIXED], np.float32)
    x_bn = np.array([CONSTANTS + [c] for c in MIXED[:4]], np.float32)  # features: 5 constant
    x_bn1 = np.array([MIXED], np.float32)  # one example: every feature's variance is 0
    train = fnn.Ctx(train=True)
    by_rows = functools.partial(_norm_reference, axes=(-1,))
    by_features = functools.partial(_norm_reference, axes=(0,))
    cases = {
        "layer_norm": (ln, lambda p, x: ln.forward(p, x), x_ln, by_rows),
        "rms_norm": (rms, lambda p, x: rms.forward(p, x), x_ln, _rms_reference),
        "batch_norm": (bn, lambda p, x: bn.forward(p, x, ctx=train), x_bn, by_features),
        "batch_norm(batch of 1)": (
            bn, lambda p, x: bn.forward(p, x, ctx=train), x_bn1, by_features
        ),
    }  # fmt: skip
    inputs = {
        name: (params_for(layer, x.shape[1:], F32, seed=5), x, normal(x.shape, F32, seed=6))
        for name, (layer, _, x, _) in cases.items()
    }

    @jax.jit
    def run(inputs):
        out = {}
        for name, (params, x, dy) in inputs.items():
            layer, fwd, _, ref = cases[name]
            y, residuals = fwd(params, x)
            fnn_ = (y, *layer.backward(params, residuals, dy))
            jax_y, (jax_g, jax_dx) = _vjp(lambda p, x, fwd=fwd: fwd(p, x)[0], params, x, dy=dy)
            ref_y, (ref_g, ref_dx) = _vjp(ref, up(params), up(x), dy=up(dy))
            out[name] = (fnn_, (jax_y, jax_g, jax_dx), (ref_y, ref_g, ref_dx))
        return out

    return inputs, jax.device_get(run(inputs))


@functools.cache
def norms():
    return run_norms(fnn.layer_norm(), fnn.batch_norm(), fnn.rms_norm())


def norm_problems(out, dy):
    """Mismatches of y, the param gradients and dx against jax.vjp and float64.
    Tolerance: y within 1e-5 (|x̂| ≤ √N, and a constant row's x̂ = 0 may come out as
    (rounding of μ)/√ε ~ 1e-9·316); the gradients within 1e-5·|grad| + 1e-3·max|dy|·√N:
    for a row of spread σ the gradient scales as 1/σ, up to 1/√ε = 316 for a constant
    row, and the largest entries of dx, ~316·max|dy|, carry float32 rounding."""
    fnn_, *references = out
    atol = 1e-3 * np.max(np.abs(dy)) * np.sqrt(dy.shape[-1])
    problems = []
    for what, want in zip(("jax.vjp", "float64"), references, strict=True):
        problems += [f"y vs {what}: {p}" for p in mismatches(fnn_[0], want[0], atol=1e-5)]
        problems += [
            f"grads vs {what}: {p}"
            for p in tree_mismatches(fnn_[1:], want[1:], rtol=1e-5, atol=atol)
        ]
    return problems


@pytest.mark.parametrize("name", ["layer_norm", "rms_norm", "batch_norm", "batch_norm(batch of 1)"])
def test_normalisation_of_zero_variance_is_finite_and_agrees(name):
    inputs, outs = norms()
    assert all_finite(outs[name][2]) and all_finite(outs[name][0])
    assert not norm_problems(outs[name], inputs[name][2])


def test_a_constant_row_is_guarded_by_epsilon_as_documented():
    """The documented guard: ε (1e-5) is added to the variance before the square root, so
    a constant row has σ = √ε, x̂ = 0, y = bias, and the gradient
    dx = (g − mean(g))/√ε with g = dy ⊙ scale (the formula of the module docstring with
    x̂ = 0): finite, and what the definition gives."""
    doc = " ".join(fnn.layer_norm.__doc__.split()) + " ".join(fnn.batch_norm.__doc__.split())
    assert doc.count("added to the variance before the square root") == 2
    inputs, outs = norms()
    params, x, dy = inputs["layer_norm"]
    (y, grads, dx), _, _ = outs["layer_norm"]
    constant = slice(0, len(CONSTANTS))
    np.testing.assert_allclose(
        y[constant], np.broadcast_to(params["bias"], y[constant].shape), atol=1e-5
    )
    g = dy[constant] * np.asarray(params["scale"])
    expected = (g - g.mean(axis=-1, keepdims=True)) / np.sqrt(1e-5)
    np.testing.assert_allclose(dx[constant], expected, rtol=1e-5, atol=1e-3)
    assert np.max(np.abs(dx[constant])) > 10  # the 1/√ε is there


# ------------------------------------------------------------------------ planted bugs
@pytest.mark.slow
def test_planted_unstable_forms_are_caught():
    """Each comparison above fails on a planted, textbook implementation: a sigmoid whose
    backward is e^−x/(1 + e^−x)² (NaN at −1e4), a tanh whose backward forgets the square
    (finite, wrong), a softmax cross-entropy without the max shift (∞ at 1e4), a
    layer_norm without ε (NaN on a constant row), an rms_norm without ε (NaN on a row of
    zeros)."""

    def sigmoid_textbook(x):
        return 1 / (1 + jnp.exp(-x)), x

    def sigmoid_textbook_grad(x, dy):
        return dy * jnp.exp(-x) / (1 + jnp.exp(-x)) ** 2  # σ' = e^−x/(1 + e^−x)²

    def tanh_no_square(x):
        y = jnp.tanh(x)
        return y, y

    planted = {
        "sigmoid": elementwise("sigmoid", sigmoid_textbook, sigmoid_textbook_grad),
        "tanh": elementwise("tanh", tanh_no_square, lambda y, dy: dy * (1 - y)),  # wrong
    }
    dy = normal(LOGITS.shape, F32, seed=1)
    results = run_activations(planted, LOGITS, dy)
    assert any("not finite" in p for p in activation_problems(results, "sigmoid", dy))
    assert any("beyond the tolerance" in p for p in activation_problems(results, "tanh", dy))

    good = fnn.softmax_cross_entropy()

    def unshifted(z, y):  # log Σ e^z without subtracting the max: e^1e4 = inf
        logp = z - jnp.log(jnp.sum(jnp.exp(z), axis=-1, keepdims=True))
        picked = jnp.take_along_axis(logp, y[:, None], axis=-1)[:, 0]
        return -jnp.mean(picked), good.forward(z, y)[1]

    name = "softmax_cross_entropy(labels)"
    _, pred, target, reference = LOSS_CASES[name]
    cases = {name: (Loss(unshifted, good.backward), pred, target, reference)}
    triple = run_losses(cases, extras=False)[name]
    assert any("not finite" in p for p in loss_problems(triple, 1e4, 4))

    ln = fnn.layer_norm()

    def no_epsilon(params, x):
        y, residuals = ln.forward(params, x)
        mu = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
        inv_sigma = 1 / jnp.sqrt(var)  # no ε: 1/0 on a constant row
        x_hat = (x - mu) * inv_sigma
        y = x_hat * params["scale"].reshape(1, -1) + params["bias"].reshape(1, -1)
        return y, residuals._replace(x_hat=x_hat, inv_sigma=inv_sigma)

    rms = fnn.rms_norm()

    def rms_no_epsilon(params, x):
        inv_rms = 1 / jnp.sqrt(jnp.mean(x**2, axis=-1, keepdims=True))  # no ε: 1/0 on zeros
        x_hat = x * inv_rms
        return x_hat * params["scale"].reshape(1, -1), rms.forward(params, x)[1]._replace(
            x_hat=x_hat, inv_rms=inv_rms
        )

    inputs, outs = run_norms(
        ln._replace(forward=no_epsilon), fnn.batch_norm(), rms._replace(forward=rms_no_epsilon)
    )
    for name in ("layer_norm", "rms_norm"):
        problems = norm_problems(outs[name], inputs[name][2])
        assert any("not finite" in p for p in problems), name


@pytest.mark.slow
def test_planted_bce_without_its_clip_fails_the_pinned_behaviour():
    """binary_cross_entropy with its clip removed from the forward (an infinite value),
    or with the backward's mask of the clip forgotten (gradients ~1/ε where the clip is
    active): the check of the documented behaviour fails on each."""
    good = fnn.binary_cross_entropy()

    def unclipped(pred, target):
        value = -jnp.mean(target * jnp.log(pred) + (1 - target) * jnp.log1p(-pred))
        return value, good.forward(pred, target)[1]

    def unmasked(residuals, dvalue=1.0):
        return good.backward(residuals._replace(inside=residuals.inside | True), dvalue)

    planted = [Loss(unclipped, good.backward), Loss(good.forward, unmasked)]

    @jax.jit
    def run():
        raw = _unclipped_bce(P_CLIP, T_CLIP)
        return [(*_fnn_and_jax(loss, P_CLIP, T_CLIP), raw) for loss in planted]

    for loss, results in zip(planted, run(), strict=True):
        assert bce_clip_problems(results), loss


# ------------------------------------------------------------------------ attention
H, D = 2, 8


def _attention_reference(params, x, causal):
    """The definition in float64 through `jax.nn.dot_product_attention` (its own masking
    and softmax): an independent formulation of multi_head_attention."""
    B, T, width = x.shape
    q, k, v = _heads(params, x)
    O = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
    return jnp.einsum("btd,de->bte", O.reshape(B, T, width), params["W_o"]) + params["b_o"].reshape(
        1, 1, width
    )


def _heads(params, x):
    """q, k, v: (batch, T, H, dh), as multi_head_attention splits them."""
    B, T, width = x.shape
    qkv = jnp.einsum("btd,de->bte", x, params["W_qkv"]) + params["b_qkv"].reshape(1, 1, -1)
    return (a.reshape(B, T, H, width // H) for a in jnp.split(qkv, 3, axis=-1))


def run_attention(configs, *, jax_vjp_for=None):
    """For each `(T, block_size, causal, input_scale)`: the dense and blockwise layers'
    `(y, grads, dx)` (float32), jax.vjp's of each forward (for the configs in
    `jax_vjp_for`, default all: it is most of the compile time), the float64 reference's,
    and the largest score |S|: ONE compiled program."""
    jax_vjp_for = configs if jax_vjp_for is None else jax_vjp_for
    inputs = {}
    for n, (T, b, causal, scale) in enumerate(configs):
        params = params_for(fnn.multi_head_attention(H), (T, D), F32, seed=10 + n)
        x = normal((2, T, D), F32, seed=20 + n, scale=scale)
        inputs[(T, b, causal, scale)] = (params, x, normal((2, T, D), F32, seed=30 + n))

    @jax.jit
    def run(inputs):
        out = {}
        for (T, b, causal, scale), (params, x, dy) in inputs.items():
            result = {}
            for kind, block_size in (("dense", None), ("blockwise", b)):
                layer = fnn.multi_head_attention(H, causal=causal, block_size=block_size)
                y, residuals = layer.forward(params, x)
                result[kind] = (y, *layer.backward(params, residuals, dy))
                if (T, b, causal, scale) in jax_vjp_for:
                    f = lambda p, x, layer=layer: layer.forward(p, x)[0]  # noqa: E731
                    y_jax, (g_jax, dx_jax) = _vjp(f, params, x, dy=dy)
                    result["jax.vjp " + kind] = (y_jax, g_jax, dx_jax)
            ref = functools.partial(_attention_reference, causal=causal)
            y_ref, (g_ref, dx_ref) = _vjp(ref, up(params), up(x), dy=up(dy))
            result["float64"] = (y_ref, g_ref, dx_ref)
            q, k, _ = _heads(up(params), up(x))
            scores = jnp.einsum("bihk,bjhk->bhij", q, k) / np.sqrt(D // H)
            result["max |S|"] = jnp.max(jnp.abs(scores))
            out[(T, b, causal, scale)] = result
        return out

    return jax.device_get(run(inputs))


def attention_problems(result):
    """Mismatches of both layers against every reference in `result`. Tolerance, leaf by
    leaf: 4ε·(1 + max|S|)·max|leaf|. P = e^(S − max) (dense) or e^(S − L) (blockwise, L
    the row's log-sum-exp kept by the forward) carries float32's rounding of numbers of
    size |S| (ε·|S| absolutely), which moves every attention weight by that fraction of
    itself; the blockwise path meets it twice (L = m + log l rounded, then S − L)."""
    of_max = 4 * EPS32 * (1 + float(result["max |S|"]))
    problems = []
    for kind in ("dense", "blockwise"):
        for what in ("float64", "jax.vjp " + kind):
            if what in result:
                problems += [
                    f"{kind} vs {what}: {p}"
                    for p in tree_mismatches(result[kind], result[what], of_max=of_max)
                ]
    return problems


# (T, block_size, causal, input scale): T = 5 in blocks of 4, the last key block holding
# ONE real key and three padded ones (the nearest the layer comes to a fully masked row:
# it has no mask argument, and a causal row always sees its own key), at scores of ~1 and
# ~1e4, against float64 and jax.vjp; T < b and a single position against float64.
PADDED = [
    (5, 4, False, 1.0),
    (5, 4, True, 1.0),
    (5, 4, False, 64.0),
    (5, 4, True, 64.0),
    (3, 8, True, 64.0),
    (1, 4, False, 64.0),
]


@functools.cache
def padded_attention():
    return run_attention(PADDED, jax_vjp_for=PADDED[:4])


@pytest.mark.slow
@pytest.mark.parametrize("config", PADDED, ids=str)
def test_padded_blockwise_attention_is_finite_and_agrees(config):
    result = padded_attention()[config]
    if config[-1] > 1:
        assert result["max |S|"] > 3e3  # large scores, as intended
    assert all_finite(result["float64"])
    assert all_finite(result["dense"]) and all_finite(result["blockwise"])
    assert not attention_problems(result)


LONG = [(512, 64, True, 3.0), (512, 64, False, 3.0), (513, 64, True, 3.0)]


@pytest.mark.slow
def test_blockwise_attention_at_t_512_in_blocks_of_64_is_finite_and_agrees():
    """T = 512 in 8 blocks of 64 (and T = 513: a ninth block of one real key), float32,
    scores up to ~100: both layers against the float64 reference (jax.vjp is left to the
    padded configs above: of the blockwise forward at this T it keeps every block pair
    and is most of the compile)."""
    out = run_attention(LONG, jax_vjp_for=())
    for config in LONG:
        result = out[config]
        assert result["max |S|"] > 20, config
        assert all_finite(result["dense"]) and all_finite(result["blockwise"]), config
        assert not attention_problems(result), config


CORE = [(causal, scale) for causal in (False, True) for scale in (10.0, 100.0)]


def run_core(backwards=(flash_attention.blockwise_backward,)):
    """For each `(causal, scale)` of `CORE`: q, k (scaled), v, dO, T = 9 in blocks of 4;
    the core's O and each of `backwards`' (dq, dk, dv), and float64 dense attention's: ONE
    compiled program. One `{config: (inputs, (core's, float64's))}` per backward."""
    inputs = {}
    for n, (causal, scale) in enumerate(CORE):
        q, k, v, dO = (normal((1, H, 9, 4), F32, seed=40 + 4 * n + i) for i in range(4))
        inputs[(causal, scale)] = (scale * q, scale * k, v, dO)

    @jax.jit
    def run(inputs):
        out = {}
        for (causal, scale), (q, k, v, dO) in inputs.items():

            def dense(q, k, v, causal=causal):
                swap = lambda a: a.transpose(0, 2, 1, 3)  # noqa: E731
                O = jax.nn.dot_product_attention(swap(q), swap(k), swap(v), is_causal=causal)
                return swap(O)

            O, L = flash_attention.blockwise_forward(q, k, v, causal=causal, block_size=4)
            ref = _vjp(dense, up(q), up(k), up(v), dy=up(dO))
            for i, backward in enumerate(backwards):
                grads = backward(q, k, v, O, L, dO, causal=causal, block_size=4)
                out[(i, causal, scale)] = ((O, grads), ref)
        return out

    out = jax.device_get(run(inputs))
    return [
        {config: (inputs[config], out[(i, *config)]) for config in CORE}
        for i in range(len(backwards))
    ]


def _backward_without_D(q, k, v, O, L, dO, **kwargs):
    """The planted core bug: the softmax VJP's row term `D_i = rowsum(dO ⊙ O)` dropped
    (the core reads O only for it)."""
    return flash_attention.blockwise_backward(q, k, v, 0 * O, L, dO, **kwargs)


@functools.cache
def blockwise_cores():
    """`run_core` of the core's backward and of `_backward_without_D`: ONE program."""
    return run_core((flash_attention.blockwise_backward, _backward_without_D))


def blockwise_core():
    return blockwise_cores()[0]


def core_problems(inputs, outputs):
    """Mismatches of the core's O and (dq, dk, dv) against float64, each on its natural
    scale (c = 1/√dh): O ~ |v|, dq ~ c·|dO|·|v|·|k|, dk ~ c·|dO|·|v|·|q|, dv ~ T·|dO|.
    Where the softmax is one-hot the true dq, dk are nearly 0 and a relative comparison
    would be meaningless; the natural scale is where a bug would show. Tolerance:
    4ε·(1 + max|S|) of it, max|S| bounded by c·max|q|·max|k|."""
    (q, k, v, dO), ((O, grads), (O_ref, grads_ref)) = inputs, outputs
    c, top = 1 / np.sqrt(q.shape[-1]), lambda a: float(np.max(np.abs(a)))  # noqa: E731
    tol = 4 * EPS32 * (1 + c * top(q) * top(k))
    natural = (c * top(dO) * top(v) * top(k), c * top(dO) * top(v) * top(q), top(dO) * q.shape[2])
    problems = [f"O: {p}" for p in mismatches(O, O_ref, atol=tol * top(v))]
    for name, got, want, scale in zip(("dq", "dk", "dv"), grads, grads_ref, natural, strict=True):
        problems += [f"{name}: {p}" for p in mismatches(got, want, atol=tol * scale)]
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("config", CORE, ids=str)
def test_blockwise_core_at_large_scores_is_accurate_in_each_gradient(config):
    """The core alone (`flash_attention`), scores up to ~250 (partly saturated rows) and
    ~2.5e4 (one-hot rows), each gradient against the float64 dense attention on its own
    natural scale (`core_problems`)."""
    inputs, outputs = blockwise_core()[config]
    q, k = inputs[:2]
    S_max = float(np.max(np.abs(q)) * np.max(np.abs(k))) / np.sqrt(q.shape[-1])
    assert S_max > (1e2 if config[1] < 50 else 1e4)  # the scores are as large as intended
    assert all_finite(outputs[0])
    assert not core_problems(inputs, outputs)


@pytest.mark.slow
def test_planted_core_bug_is_caught_at_large_scores():
    """The softmax VJP's row term `D_i = rowsum(dO ⊙ O)` dropped (`_backward_without_D`):
    `core_problems` reports dq and dk at every config of `CORE`."""
    for config, (inputs, outputs) in blockwise_cores()[1].items():
        problems = core_problems(inputs, outputs)
        assert any(p.startswith("dq") for p in problems), config
        assert any(p.startswith("dk") for p in problems), config


@pytest.mark.slow
def test_planted_padding_without_its_mask_is_caught(monkeypatch):
    """The padded keys of the last block left unmasked (zeros, so scores of 0 that take a
    share of every row): the comparison of the padded configs fails against float64, and
    only the blockwise layer's (jax.vjp, of the planted forward itself, is left out: it is
    most of the compile, and not the reference that the plant must fail)."""
    scores = flash_attention._scores

    def unmasked(*args, masked, causal, **kwargs):
        return scores(*args, masked=masked and causal, causal=causal, **kwargs)

    monkeypatch.setattr(flash_attention, "_scores", unmasked)
    result = run_attention([(5, 4, False, 1.0)], jax_vjp_for=())[(5, 4, False, 1.0)]
    problems = attention_problems(result)
    assert any(p.startswith("blockwise vs float64") for p in problems)
    assert not any(p.startswith("dense") for p in problems)


# ------------------------------------------------------------------------ the LM head
HEAD_CHUNKS = [4, None]  # 6 rows: a padded last chunk, and one chunk


def _head_inputs():
    """h and table whose logits reach ±1e4 (rows of 4 features, 7 classes)."""
    h = normal((2, 3, 4), F32, seed=3, scale=60.0)
    table = normal((7, 4), F32, seed=4, scale=60.0)
    ids = np.array([[0, 6, 3], [2, 2, 5]], np.int32)
    return HeadInput(h, table), ids


def _head_reference(pred, ids):
    """The unfused head: the logits, then the mean of logsumexp − the target's logit."""
    z = tied_logits(pred).reshape(-1, pred.table.shape[0])
    picked = jnp.take_along_axis(z, ids.reshape(-1, 1), axis=-1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(z, axis=-1) - picked)


def run_head(losses):
    """For each `name: loss`, its `_loss_triple` at logits up to ~3e4, and the largest
    logit: ONE compiled program."""

    @jax.jit
    def run(pred, ids):
        out = {
            name: _loss_triple(loss, pred, ids, _head_reference) for name, loss in losses.items()
        }
        return out, jnp.max(jnp.abs(tied_logits(pred)))

    return jax.device_get(run(*_head_inputs()))


@functools.cache
def head_losses():
    """Every chunking of `HEAD_CHUNKS` and the planted `textbook_head`, in ONE program: the
    planted head shares the references' compile."""
    heads = {str(chunk): fnn.lm_cross_entropy(chunk) for chunk in HEAD_CHUNKS}
    return run_head({**heads, "textbook": textbook_head()})


def textbook_head(chunk_size=4):
    """lm_cross_entropy whose backward takes p = e^z/Σe^z, unshifted (NaN at large z)."""
    good = fnn.lm_cross_entropy(chunk_size)

    def backward(residuals, dvalue=1.0):
        h, table, _, target = residuals
        z = tied_logits(HeadInput(h, table))  # (batch, T, V)
        p = jnp.exp(z) / jnp.sum(jnp.exp(z), axis=-1, keepdims=True)  # e^z/Σe^z: inf/inf
        dz = (p - jax.nn.one_hot(target, table.shape[0], dtype=p.dtype)) * dvalue / target.size
        dh = jnp.einsum("btv,vd->btd", dz, table)  # dh = dz·W
        return HeadInput(dh, jnp.einsum("btv,btd->vd", dz, h))  # dW = dzᵀ·h

    return Loss(good.forward, backward, "textbook head")


def head_problems(triple, logit_scale):
    """Mismatches of the head's value and gradients (dh, dtable) against jax.grad of its
    forward (float32) and the unfused head in float64. Tolerance: the value within
    4ε·|value|; each gradient within 8ε·(1 + scale)·max|gradient|. The backward gets
    p = e^(z − L) from a RECOMPUTED z (fnn/lm/head.py): where the recomputation rounds
    differently from the forward's (a chunked loop compiles the two matmuls apart), z
    moves by float32's rounding of numbers of size `scale`, ε·scale, and every p by that
    fraction of itself: 1e-3 at logits of 3e4, where jax.grad, which keeps p, is exact
    to 1e-7."""
    (value, grad), *references = triple
    of_max = 8 * EPS32 * (1 + logit_scale)
    problems = []
    for what, (v_want, g_want) in zip(("jax.grad", "float64"), references, strict=True):
        problems += [f"value vs {what}: {p}" for p in mismatches(value, v_want, rtol=4 * EPS32)]
        problems += [f"grad vs {what}: {p}" for p in tree_mismatches(grad, g_want, of_max=of_max)]
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("chunk", HEAD_CHUNKS)
def test_lm_cross_entropy_at_logits_of_1e4_is_finite_and_agrees(chunk):
    out, scale = head_losses()
    assert 5e3 < scale < 1e5  # the logits are as large as intended
    triple = out[str(chunk)]
    assert all_finite(triple[2]) and all_finite(triple[0])
    assert not head_problems(triple, scale)


@pytest.mark.slow
def test_planted_textbook_head_is_caught():
    out, scale = head_losses()
    assert any("not finite" in p for p in head_problems(out["textbook"], scale))


# ------------------------------------------------------------------------ the GPT's head
def run_gpt(heads):
    """A GPT (V 11, width 8, 2 heads, 1 block) with params N(0, 0.5²) and its final
    layer_norm's scale 1e3, so that its tied logits reach ~1e4, on 2 sequences of 6
    tokens: `value_and_grad` of the fused model with each loss of `heads` (`{name: head}`,
    under its name) and of the logits model with softmax_cross_entropy (by hand, float32),
    of the fused model with `heads["fused"]` by jax.grad (float32) and of the logits model
    by jax.grad in float64, and the largest logit: ONE compiled program."""
    V, C, width, n_heads = 11, 8, 8, 2
    fused = fnn.gpt(V, C, width, n_heads, 1, head="fused")
    logits_net = fnn.gpt(V, C, width, n_heads, 1)
    shapes = jax.eval_shape(lambda k: fused.init(k, (C,), F32)[1], jax.random.key(0))
    rng = np.random.default_rng(7)
    params = jax.tree.map(lambda s: (0.5 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    params["ln_f"]["scale"] = np.full((width,), 1e3, np.float32)
    ids = rng.integers(0, V, (2, 7)).astype(np.int32)
    x, y = ids[:, :-1], ids[:, 1:]
    sce = fnn.softmax_cross_entropy()

    @jax.jit
    def run(params):
        return {
            **{name: fnn.value_and_grad(fused, head)(params, x, y) for name, head in heads.items()},
            "logits": fnn.value_and_grad(logits_net, sce)(params, x, y),
            "jax.grad fused": fnn.value_and_grad(fused, heads["fused"], "autodiff")(params, x, y),
            "float64": fnn.value_and_grad(logits_net, sce, "autodiff")(up(params), x, y),
            "max |z|": jnp.max(jnp.abs(tied_logits(fused.forward(params, x)[0]))),
        }

    return jax.device_get(run(params))


@functools.cache
def gpt_heads():
    """`run_gpt` of the fused head (`lm_cross_entropy`, chunks of 4 rows, one padded) and,
    in the same program, of the planted `textbook_head` (under "textbook")."""
    return run_gpt({"fused": fnn.lm_cross_entropy(4), "textbook": textbook_head()})


def gpt_problems(out, fused="fused"):
    """Mismatches of both hand-written models' value and gradients (the fused model's:
    `out[fused]`) against jax.grad of the fused model (float32) and of the logits model
    (float64). Tolerance as for the LM head: 8ε·(1 + max|z|) of each gradient's largest
    entry."""
    of_max = 8 * EPS32 * (1 + float(out["max |z|"]))
    return [
        f"{'fused' if kind == fused else kind} vs {what}: {p}"
        for kind in (fused, "logits")
        for what in ("jax.grad fused", "float64")
        for p in tree_mismatches(out[kind], out[what], of_max=of_max)
    ]


@pytest.mark.slow
def test_gpt_head_at_large_logits_is_finite_and_agrees():
    """The fused head (`lm_cross_entropy`, chunks of 4 rows, one padded) and the logits
    head with `softmax_cross_entropy` of a GPT whose logits reach ~1e4 (`run_gpt`)."""
    out = gpt_heads()
    assert out["max |z|"] > 1e3
    assert all_finite(out["fused"]) and all_finite(out["logits"])
    assert not gpt_problems(out)


@pytest.mark.slow
def test_planted_textbook_head_in_the_gpt_is_caught():
    problems = gpt_problems(gpt_heads(), fused="textbook")
    assert any(p.startswith("fused vs float64") and "not finite" in p for p in problems)
