"""The layers: every building block with its hand-written backward pass, one family a
module, and the networks built from them (`models`). Everything here is re-exported from
`fnn` itself."""

from fnn.layers.activations import (
    ACTIVATIONS,
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
from fnn.layers.attention import multi_head_attention
from fnn.layers.combinators import residual, serial
from fnn.layers.conv import conv1d, conv2d
from fnn.layers.dense import dense
from fnn.layers.dropout import dropout
from fnn.layers.embedding import embedding, positional_embedding
from fnn.layers.models import cnn, mlp, transformer
from fnn.layers.normalization import batch_norm, layer_norm
from fnn.layers.pooling import avg_pool, max_pool
from fnn.layers.reshape import flatten

__all__ = [
    "ACTIVATIONS",
    "avg_pool",
    "batch_norm",
    "cnn",
    "conv1d",
    "conv2d",
    "dense",
    "dropout",
    "elu",
    "embedding",
    "flatten",
    "gelu",
    "get_activation",
    "identity",
    "layer_norm",
    "leaky_relu",
    "log_softmax",
    "max_pool",
    "mlp",
    "multi_head_attention",
    "positional_embedding",
    "relu",
    "residual",
    "serial",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "tanh",
    "transformer",
]
