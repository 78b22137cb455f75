"""Training: a compiled step over a `TrainState`, a compiled epoch, `fit`, optimisers by
name, data parallelism over a device mesh, and checkpoints.

Innermost first:

- `step` — `make_train_step(net, loss, optimizer, mode)`: one minibatch step,
  `step(train_state, (x, y), key=None) -> (train_state, {"loss": value})`, the same for
  every network; `scan_steps` runs it over stacked batches in one `lax.scan`;
- `batching` — how an epoch shuffles and cuts the data, and the batch-size rule;
- `epoch` — `make_epoch_fn` (one epoch as ONE compiled call) and `make_eval_fn`;
- `fitting` — `fit(net, loss, optimizer, state, train, test, ...)`: the epoch loop
  on the host (history, progress bar, early stopping, the non-finite-loss guard, a
  per-epoch callback); it returns a `FitResult` whose `state` is the trained `TrainState`;
- `fit_options` — `EarlyStopping`, `FitResult` and the history's keys;
- `optim` — optimisers and learning-rate schedules by name (optax);
- `parallel`, `distributed` — the same step and epoch over a mesh of devices, on one
  process or several;
- `checkpoint` — an atomic save and a validated load of a run's state.
"""

from fnn.train import checkpoint, distributed, optim, parallel
from fnn.train.batching import check_batch_size, epoch_order
from fnn.train.epoch import make_epoch_fn, make_eval_fn
from fnn.train.fit_options import EarlyStopping, FitResult, new_history
from fnn.train.fitting import NonFiniteLossError, fit
from fnn.train.step import Batch, TrainState, make_train_step, scan_steps, step_key

__all__ = [
    "Batch",
    "EarlyStopping",
    "FitResult",
    "NonFiniteLossError",
    "TrainState",
    "check_batch_size",
    "checkpoint",
    "distributed",
    "epoch_order",
    "fit",
    "make_epoch_fn",
    "make_eval_fn",
    "make_train_step",
    "new_history",
    "optim",
    "parallel",
    "scan_steps",
    "step_key",
]
