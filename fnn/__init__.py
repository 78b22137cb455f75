"""fnn: functional neural networks in JAX with hand-written backpropagation.

Every layer, activation and loss is a pair of pure functions, forward and backward, over
a parameter pytree; the backward is written by hand and checked against `jax.grad`.
"""

from fnn import initializers, parallel, per_example, train
from fnn.activations import (
    elu,
    gelu,
    get_activation,
    identity,
    leaky_relu,
    log_softmax,
    relu,
    sigmoid,
    silu,
    softmax,
    softplus,
    tanh,
)
from fnn.attention import multi_head_attention
from fnn.check import CheckResult, check_layer, check_loss, check_model, run_checks
from fnn.conv import avg_pool, cnn, conv1d, conv2d, flatten, max_pool
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
from fnn.dropout import dropout
from fnn.embedding import embedding, positional_embedding
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad, value_grad_and_state
from fnn.layers import dense
from fnn.losses import (
    binary_cross_entropy,
    get_loss,
    huber,
    mean_squared_error,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from fnn.network import mlp, residual, serial
from fnn.normalization import batch_norm, layer_norm
from fnn.per_example import per_example_grads, per_example_value_and_grads
from fnn.train import make_train_step

__version__ = "0.1.0"

__all__ = [
    "CheckResult",
    "Ctx",
    "Layer",
    "Loss",
    "apply",
    "as_custom_vjp",
    "avg_pool",
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
    "get_activation",
    "get_loss",
    "huber",
    "identity",
    "init",
    "init_state",
    "initializers",
    "layer_norm",
    "leaky_relu",
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
    "update_state",
    "value_and_grad",
    "value_grad_and_state",
]
