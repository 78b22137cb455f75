"""The catalogue of built-in checks: every layer, activation and loss, and a few whole
networks, each with the input it is checked on. `fnn check`, the test battery and the
shape and dtype tests all read `CASES`; adding a layer means adding its entry here.

Each item is a `LayerCase`, `LossCase` or `ModelCase` (fnn/check/cases.py, which says
what `network=True` and `variant_of=` mean).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fnn import initializers, losses
from fnn.check.cases import Case, LayerCase, LossCase, ModelCase
from fnn.check.checker import CheckResult
from fnn.check.report import short_verdict
from fnn.core import Ctx, Layer, choose, init_state
from fnn.layers import (
    ACTIVATIONS,
    avg_pool,
    batch_norm,
    cnn,
    conv1d,
    conv2d,
    dense,
    dropout,
    embedding,
    flatten,
    gelu,
    layer_norm,
    max_pool,
    mlp,
    multi_head_attention,
    positional_embedding,
    residual,
    rms_norm,
    serial,
    softmax,
    tanh,
)
from fnn.lm import gpt, gpt_block
from fnn.lm.head import HeadInput, lm_cross_entropy

# ----------------------------------------------------------------------------- inputs


def _regression(shape=(6, 3)):
    return lambda rng: (rng.normal(size=shape), rng.normal(size=shape))


def _binary_probs(rng, shape=(6, 2)):
    return rng.uniform(0.05, 0.95, size=shape), rng.random(shape)


def _binary_logits(rng, shape=(6, 2)):
    return 3 * rng.normal(size=shape), rng.random(shape)


def _labels(rng, shape=(6, 5)):
    """Logits and integer labels in which every class occurs."""
    labels = rng.permutation(np.arange(shape[0]) % shape[-1])
    return 2 * rng.normal(size=shape), labels


def _onehot(rng, shape=(6, 5)):
    logits, labels = _labels(rng, shape)
    return logits, np.eye(shape[-1])[labels]


def _soft(rng, shape=(6, 5)):
    """Soft targets whose rows do not sum to 1 (the gradient's Σt factor then shows)."""
    return 2 * rng.normal(size=shape), 2 * rng.random(shape)


def _head_inputs(rng, batch=2, T=5, D=4, vocab=7):
    """A language model head's input (hidden states, weight) and next-token ids in which
    every id occurs."""
    ids = rng.permutation(np.arange(batch * T) % vocab).reshape(batch, T)
    return HeadInput(rng.normal(size=(batch, T, D)), rng.normal(size=(vocab, D))), ids


def _token_ids(vocab: int):
    """A `make_input` drawing integer token ids in [0, vocab)."""
    return lambda key, shape, dtype: jax.random.randint(key, shape, 0, vocab)


def _running_stats(build):
    """A `ctx(params)` for evaluation mode with running statistics in general position
    (means from N(0, 1), variances from U(0.5, 2.5), per feature), so that the check sees
    them used."""

    def ctx(params):
        state = init_state(build(), params)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        rng = np.random.default_rng(1)
        moved = [
            rng.uniform(0.5, 2.5, np.shape(v)) if jax.tree_util.keystr(path).endswith("['var']")
            else rng.normal(size=np.shape(v))
            for path, v in leaves
        ]  # fmt: skip
        return Ctx(
            state=jax.tree.unflatten(
                treedef, [jnp.asarray(m, v.dtype) for m, (_, v) in zip(moved, leaves, strict=True)]
            )
        )

    return ctx


def _training(build, seed=0):
    """A `ctx(params)` for training mode: a fixed dropout key and the initial state."""
    return lambda params: Ctx(True, jax.random.PRNGKey(seed), init_state(build(), params))


# ----------------------------------------------------------------------------- networks


def _tutorial_net() -> Layer:
    """The tutorial's 100→5→4→1 all-sigmoid network with its U(0, 1)×0.01 weights."""
    return mlp(
        [5, 4, 1],
        "sigmoid",
        output_activation="sigmoid",
        w_init=initializers.uniform(0.01),
        b_init="zeros",
    )


def _tutorial_data(rng):
    return rng.random((200, 100)), rng.random((200, 1))


def _bn_mlp() -> Layer:
    return mlp([6, 5, 3], "tanh", batch_norm=True, dropout=0.2)


def _bn_cnn() -> Layer:
    return cnn(3, channels=(2, 3), strides=(1, 2), hidden=(4,), batch_norm=True)


def _transformer_block() -> Layer:
    return serial(
        embedding(6, 4),
        positional_embedding(),
        residual(serial(layer_norm(), multi_head_attention(2, causal=True))),
        residual(serial(layer_norm(), dense(8), gelu(), dense(4))),
        dense(6),
    )


def _gpt_block_dropout() -> Layer:
    return gpt_block(4, 2, dropout_rate=0.3)


def _next_tokens(vocab: int, shape: tuple[int, int]):
    """Token ids and next-token targets for a language model's `ModelCase`."""

    def data(rng):
        ids = rng.integers(0, vocab, (shape[0], shape[1] + 1))
        return ids[:, :-1], ids[:, 1:]

    return data


# ----------------------------------------------------------------------------- the cases

CASES: dict[str, Case] = {
    # dense layers and activations
    "dense": LayerCase(lambda: dense(3), (5,)),
    "dense_no_bias": LayerCase(lambda: dense(3, use_bias=False), (5,), variant_of="dense"),
    "dense_3d_input": LayerCase(lambda: dense(3), (2, 5), variant_of="dense"),
    **{name: LayerCase(factory, (7,)) for name, factory in ACTIVATIONS.items()},
    # losses
    "mean_squared_error": LossCase(losses.mean_squared_error, _regression()),
    "huber": LossCase(losses.huber, _regression((8, 2))),
    "binary_cross_entropy": LossCase(losses.binary_cross_entropy, _binary_probs),
    "sigmoid_binary_cross_entropy": LossCase(losses.sigmoid_binary_cross_entropy, _binary_logits),
    "softmax_cross_entropy_labels": LossCase(losses.softmax_cross_entropy, _labels),
    "softmax_cross_entropy_onehot": LossCase(
        losses.softmax_cross_entropy, _onehot, variant_of="softmax_cross_entropy_labels"
    ),
    "softmax_cross_entropy_soft": LossCase(
        losses.softmax_cross_entropy, _soft, variant_of="softmax_cross_entropy_labels"
    ),
    # 10 rows in chunks of 3: the last chunk padded
    "lm_cross_entropy": LossCase(lambda: lm_cross_entropy(3), _head_inputs),
    "lm_cross_entropy_one_chunk": LossCase(
        lambda: lm_cross_entropy(None), _head_inputs, variant_of="lm_cross_entropy"
    ),
    # networks of dense layers
    "tutorial_net": LayerCase(_tutorial_net, (100,), batch=8, input_scale=1.0, network=True),
    **{
        f"mlp_{name}": LayerCase(functools.partial(mlp, [6, 5, 3], name), (4,), network=True)
        for name in ACTIVATIONS
        if name != "identity"
    },
    "serial_dense_softmax": LayerCase(lambda: serial(dense(4), softmax()), (3,), network=True),
    # convolution, pooling and flatten, channels last
    "conv2d": LayerCase(lambda: conv2d(3, 3), (6, 6, 2)),
    "conv2d_stride2": LayerCase(lambda: conv2d(3, 3, stride=2), (6, 6, 2)),
    "conv2d_valid_stride2_odd": LayerCase(
        lambda: conv2d(3, 3, stride=2, padding="VALID"), (6, 7, 2), variant_of="conv2d"
    ),
    "conv2d_dilation2": LayerCase(lambda: conv2d(3, 3, dilation=2), (6, 6, 2), variant_of="conv2d"),
    "conv2d_explicit_padding": LayerCase(
        lambda: conv2d(3, (3, 2), stride=(2, 1), padding=((1, 2), (0, 1))),
        (6, 6, 2),
        variant_of="conv2d",
    ),
    "conv2d_valid_no_bias": LayerCase(
        lambda: conv2d(3, 3, padding="VALID", use_bias=False), (6, 6, 2), variant_of="conv2d"
    ),
    "conv1d": LayerCase(lambda: conv1d(3, 3), (7, 2)),
    "conv1d_stride2_valid_dilation2": LayerCase(
        lambda: conv1d(3, 3, stride=2, padding="VALID", dilation=2), (9, 2), variant_of="conv1d"
    ),
    "max_pool": LayerCase(lambda: max_pool(2), (6, 6, 2)),
    "max_pool_3x3_stride1_same": LayerCase(
        lambda: max_pool(3, 1, "SAME"), (5, 6, 2), variant_of="max_pool"
    ),
    "max_pool_1d": LayerCase(lambda: max_pool((3,), 2, "SAME"), (7, 2), variant_of="max_pool"),
    "avg_pool": LayerCase(lambda: avg_pool(2), (6, 6, 2)),
    "avg_pool_3x3_stride2_same": LayerCase(
        lambda: avg_pool(3, 2, "SAME"), (6, 5, 2), variant_of="avg_pool"
    ),
    "flatten": LayerCase(flatten, (4, 3, 2)),
    "cnn": LayerCase(
        lambda: cnn(3, channels=(2, 3), strides=(1, 2), hidden=(4,)), (6, 6, 1), network=True
    ),
    # layer and RMS normalisation and skip connections
    "layer_norm": LayerCase(layer_norm, (5,)),
    "layer_norm_3d_input": LayerCase(layer_norm, (2, 5), variant_of="layer_norm"),
    "layer_norm_no_scale_no_bias": LayerCase(
        lambda: layer_norm(use_scale=False, use_bias=False), (5,), variant_of="layer_norm"
    ),
    "rms_norm": LayerCase(rms_norm, (2, 5)),
    "residual_mlp": LayerCase(
        lambda: residual(serial(dense(5), tanh(), dense(5))), (5,), network=True
    ),
    "residual_layer_norm": LayerCase(lambda: residual(layer_norm()), (2, 5)),
    # random and stateful layers, in both modes
    "batch_norm_train": LayerCase(batch_norm, (5,), batch=6, ctx=Ctx(train=True)),
    "batch_norm_train_nhwc": LayerCase(
        batch_norm, (3, 3, 2), ctx=Ctx(train=True), variant_of="batch_norm_train"
    ),
    "batch_norm_no_scale_train": LayerCase(
        lambda: batch_norm(use_scale=False),
        (5,),
        batch=6,
        ctx=Ctx(train=True),
        variant_of="batch_norm_train",
    ),
    "batch_norm_eval": LayerCase(batch_norm, (5,), ctx=_running_stats(batch_norm)),
    "dropout_train": LayerCase(lambda: dropout(0.3), (2, 7), ctx=_training(lambda: dropout(0.3))),
    "dropout_eval": LayerCase(lambda: dropout(0.3), (7,)),
    "mlp_batch_norm_dropout_train": LayerCase(
        _bn_mlp, (4,), batch=6, ctx=_training(_bn_mlp), network=True
    ),
    "mlp_batch_norm_dropout_eval": LayerCase(
        _bn_mlp, (4,), ctx=_running_stats(_bn_mlp), network=True
    ),
    "cnn_batch_norm_train": LayerCase(_bn_cnn, (6, 6, 1), ctx=_training(_bn_cnn), network=True),
    # sequences
    "embedding": LayerCase(lambda: embedding(7, 3), (6,), make_input=_token_ids(7)),
    "embedding_2d_ids": LayerCase(
        lambda: embedding(5, 4), (2, 3), make_input=_token_ids(5), variant_of="embedding"
    ),
    "positional_embedding": LayerCase(positional_embedding, (5, 4)),
    "multi_head_attention": LayerCase(lambda: multi_head_attention(1), (3, 4)),
    "multi_head_attention_causal": LayerCase(lambda: multi_head_attention(2, causal=True), (5, 4)),
    "attention_4_heads_causal_no_bias": LayerCase(
        lambda: multi_head_attention(4, causal=True, use_bias=False),
        (3, 8),
        variant_of="multi_head_attention_causal",
    ),
    # blockwise attention in blocks of 2, the last block padded; T = 9: 5 diagonal and
    # 10 lower block pairs, looped (sweeps of up to 4 pairs are unrolled)
    "flash_attention_causal": LayerCase(
        lambda: multi_head_attention(2, causal=True, block_size=2), (9, 4)
    ),
    "flash_attention": LayerCase(
        lambda: multi_head_attention(2, block_size=2), (5, 4), variant_of="flash_attention_causal"
    ),
    "transformer_block": LayerCase(
        _transformer_block, (5,), make_input=_token_ids(6), network=True
    ),
    # the GPT: one block (each recompute mode), the whole model with its tied head
    "gpt_block": LayerCase(lambda: gpt_block(4, 2, recompute="none"), (5, 4), batch=2),
    "gpt_block_recompute_all": LayerCase(
        lambda: gpt_block(4, 2, recompute="all"), (5, 4), batch=2, variant_of="gpt_block"
    ),
    "gpt_block_dropout_train": LayerCase(
        _gpt_block_dropout, (5, 4), batch=2, ctx=_training(_gpt_block_dropout)
    ),
    "gpt": LayerCase(
        lambda: gpt(7, 6, 4, 2, 2), (5,), batch=2, make_input=_token_ids(7), network=True
    ),
    "gpt_fused_head": ModelCase(
        lambda: gpt(7, 6, 4, 2, 2, head="fused", recompute="all"),
        lambda: lm_cross_entropy(4),
        _next_tokens(7, (3, 5)),
    ),
    # the tutorial's whole objective, manual against autodiff
    "tutorial_model": ModelCase(
        lambda: mlp([5, 4, 1], "sigmoid", w_init=initializers.uniform(0.01)),
        losses.sigmoid_binary_cross_entropy,
        _tutorial_data,
    ),
}


def run_checks(
    names: Sequence[str] | None = None,
    dtype: str = "float64",
    *,
    finite_differences: bool = True,
) -> list[CheckResult]:
    """Runs the built-in checks named (all when `names` is empty or None); with
    `finite_differences=False` only against `jax.vjp`."""
    names = list(names) if names else list(CASES)
    cases = [choose("check", name, CASES) for name in names]
    return [
        dataclasses.replace(case.run(dtype, finite_differences), name=name)
        for name, case in zip(names, cases, strict=True)
    ]


def format_table(results: Sequence[CheckResult]) -> str:
    """A plain-text table of results, one line per item: the errors against `jax.vjp`,
    and the verdicts of finite differences (fd), per-example gradients (per-ex) and the
    tie point (ties)."""
    header = (
        f"{'name':<32} {'dtype':<8} {'max abs err':>12} {'max rel err':>12}  {'fd':<8}"
        f"{'per-ex':<8}{'ties':<8}result"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        verdicts = {"finite differences": r.finite_differences, "per-example": r.per_example}
        verdicts["ties"] = r.ties
        lines.append(
            f"{r.name:<32} {r.dtype:<8} {r.max_abs_err:>12.2e} {r.max_rel_err:>12.2e}  "
            + "".join(f"{short_verdict(v):<8}" for v in verdicts.values())
            + ("ok" if r.passed else "FAIL")
        )
        lines += [f"    {r.error}"] if r.error else []
        lines += [f"    {k} {v}" for k, v in verdicts.items() if v.startswith("failed")]
    failed = sum(not r.passed for r in results)
    lines.append(f"{len(results) - failed} passed, {failed} failed")
    return "\n".join(lines)
