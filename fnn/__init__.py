"""fnn: functional neural networks in JAX with hand-written backpropagation.

Every layer, activation and loss is a pair of pure functions, forward and backward, over
a parameter pytree; the backward is written by hand and checked against `jax.grad`.

`fnn` exports each public name once: the contract (`Layer`, `Loss`, `Ctx`, `Walk`,
`combinator`, `forward`, `apply`, `init`, ...), every layer (`fnn.layers.__all__`), the
losses, the gradients, the checker, training (`TrainState`, `make_train_step`, `fit`),
the inspection tools, the GPT and the errors (`fnn.errors.__all__`). The submodules stay
importable by name (`fnn.initializers`, `fnn.train`, `fnn.per_example`, ...);
`fnn.bench`, `fnn.data`, `fnn.experiment` and `fnn.plot` load on first use.
"""

from fnn import errors, layers
from fnn import initializers as initializers  # submodules, importable as before, not in __all__
from fnn import per_example as per_example
from fnn import train as train
from fnn.check import CheckResult, check_layer, check_loss, check_model, run_checks
from fnn.core import (
    Ctx,
    Layer,
    Loss,
    Walk,
    apply,
    forward,
    init,
    init_state,
    update_state,
)
from fnn.errors import *  # noqa: F403  (the errors, as fnn.errors.__all__ lists them)
from fnn.grad import as_custom_vjp, loss_as_custom_vjp, value_and_grad, value_grad_and_state
from fnn.layers import *  # noqa: F403  (the layers, as fnn.layers.__all__ lists them)
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
from fnn.train import EarlyStopping, FitResult, TrainState, fit, make_train_step
from fnn.train import parallel as parallel  # `fnn.parallel`: fnn.train.parallel, as before
from fnn.version import __version__ as __version__
from fnn.walk import combinator

__all__ = [
    # the contract
    "Ctx",
    "Layer",
    "Loss",
    "Walk",
    "apply",
    "combinator",
    "forward",
    "init",
    "init_state",
    "update_state",
    # the losses
    "binary_cross_entropy",
    "get_loss",
    "huber",
    "mean_squared_error",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    # the gradients
    "as_custom_vjp",
    "loss_as_custom_vjp",
    "per_example_grads",
    "per_example_value_and_grads",
    "value_and_grad",
    "value_grad_and_state",
    # the checker
    "CheckResult",
    "check_layer",
    "check_loss",
    "check_model",
    "run_checks",
    # training
    "EarlyStopping",
    "FitResult",
    "TrainState",
    "fit",
    "make_train_step",
    # seeing the backward
    "Trace",
    "backward_trace",
    # the GPT
    "HeadInput",
    "generate",
    "gpt",
    "gpt_block",
    "lm_cross_entropy",
]
__all__ += layers.__all__
__all__ += errors.__all__

_ON_DEMAND = ("bench", "data", "experiment", "plot")  # imported when first used: `fnn.bench`
# Deprecated aliases, kept for one release: `fnn.<name>` is `<module>.<name>` and warns.
_MOVED = {"summary": "fnn.bench"}


def __getattr__(name: str):
    """`fnn.bench`, `fnn.data`, `fnn.experiment` and `fnn.plot` load on first use, so that
    `import fnn` does not pay for the harness, scikit-learn or matplotlib. A name in
    `_MOVED` (`fnn.summary`, now `fnn.bench.summary`) still resolves, with a
    DeprecationWarning."""
    import importlib

    if name in _ON_DEMAND:
        return importlib.import_module(f"fnn.{name}")
    if name in _MOVED:
        import warnings

        warnings.warn(
            f"fnn.{name} is deprecated and goes in the next release: use {_MOVED[name]}.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module 'fnn' has no attribute {name!r}")
