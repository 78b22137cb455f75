"""fnn: functional neural networks in JAX with hand-written backpropagation.

Every layer, activation and loss is a pair of pure functions, forward and backward, over
a parameter pytree; the backward is written by hand and checked against `jax.grad`.
"""

from fnn import initializers, per_example, train
from fnn.check import CheckResult, check_layer, check_loss, check_model, run_checks
from fnn.core import (
    Ctx,
    Layer,
    Loss,
    apply,
    forward,
    init,
    init_state,
    update_state,
)
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad, value_grad_and_state
from fnn.layers import (
    avg_pool,
    batch_norm,
    cnn,
    conv1d,
    conv2d,
    dense,
    dropout,
    elu,
    embedding,
    flatten,
    gelu,
    get_activation,
    identity,
    layer_norm,
    leaky_relu,
    log_softmax,
    max_pool,
    mlp,
    multi_head_attention,
    positional_embedding,
    relu,
    residual,
    serial,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
    transformer,
)
from fnn.lm import generate, gpt, gpt_block
from fnn.lm.head import HeadInput, lm_cross_entropy
from fnn.losses import (
    binary_cross_entropy,
    get_loss,
    huber,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from fnn.per_example import per_example_grads, per_example_value_and_grads
from fnn.trace import Trace, backward_trace
from fnn.train import TrainState, make_train_step, parallel
from fnn.version import __version__ as __version__

__all__ = [
    "CheckResult",
    "Ctx",
    "HeadInput",
    "Layer",
    "Loss",
    "Trace",
    "TrainState",
    "apply",
    "as_custom_vjp",
    "avg_pool",
    "backward_trace",
    "batch_norm",
    "binary_cross_entropy",
    "check_layer",
    "check_loss",
    "check_model",
    "cnn",
    "conv1d",
    "conv2d",
    "dense",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "forward",
    "gelu",
    "generate",
    "get_activation",
    "get_loss",
    "gpt",
    "gpt_block",
    "huber",
    "identity",
    "init",
    "init_state",
    "initializers",
    "layer_norm",
    "leaky_relu",
    "lm_cross_entropy",
    "log_softmax",
    "loss_as_custom_vjp",
    "make_train_step",
    "max_pool",
    "mean_squared_error",
    "mlp",
    "multi_head_attention",
    "parallel",
    "per_example",
    "per_example_grads",
    "per_example_value_and_grads",
    "positional_embedding",
    "relu",
    "residual",
    "run_checks",
    "serial",
    "sigmoid",
    "sigmoid_binary_cross_entropy",
    "silu",
    "softmax",
    "softmax_cross_entropy",
    "softplus",
    "tanh",
    "train",
    "transformer",
    "update_state",
    "value_and_grad",
    "value_grad_and_state",
]

_ON_DEMAND = ("bench", "data", "experiment", "plot")  # imported when first used: `fnn.bench`


def __getattr__(name: str):
    """`fnn.bench`, `fnn.data`, `fnn.experiment` and `fnn.plot` load on first use, so that
    `import fnn` does not pay for the harness, scikit-learn or matplotlib; so does
    `fnn.summary` (`fnn.bench.summary`)."""
    import importlib

    if name in _ON_DEMAND:
        return importlib.import_module(f"fnn.{name}")
    if name == "summary":
        return importlib.import_module("fnn.bench").summary
    raise AttributeError(f"module 'fnn' has no attribute {name!r}")
