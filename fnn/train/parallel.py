"""Data-parallel training over a device mesh, on one host or several (`jax.distributed`).

The same step as `fnn.train.make_train_step` (the same signature, a `TrainState` in and
out), placed on a 1-D `Mesh` whose one axis is
`"data"`:

- the batch is sharded along `"data"` (`NamedSharding(mesh, P("data"))`): each device
  holds `batch / devices` examples;
- params and optimiser state are replicated (`NamedSharding(mesh, P())`);
- the losses average over the batch, so each device's gradient is a partial sum over its
  examples; XLA inserts the all-reduce that sums them (a `psum` over `"data"`), and every
  device applies the same optimiser update to its copy of the params.

Nothing else changes: `mode="manual"` runs the hand-written backward passes on each shard
and `mode="autodiff"` runs `jax.grad`, and the result equals the one-device step up to the
order of the floating-point sums.

Several processes (hosts): join them first (`fnn.train.distributed`); `make_data_mesh`
then spans the devices of all processes, and each process feeds only its share of every
global batch (`jax.make_array_from_process_local_data`).

Big layers: `fsdp_shardings` shards each dense weight's rows over `"data"` as well
(fully sharded data parallel): a device keeps `1/devices` of the weight, XLA gathers it
for the matmuls and scatters the gradient back; the results are the replicated step's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnn.core import Layer, Loss, Params, SettingError, as_array
from fnn.errors import ShapeError
from fnn.train.batching import check_batch_size, epoch_order
from fnn.train.step import TrainState, make_train_step, scan_steps, step_key

DATA_AXIS = "data"


# ---------------------------------------------------------------------------------------
# Meshes and shardings


def make_data_mesh(devices: int | None = None) -> Mesh:
    """A 1-D mesh with axis `"data"` over the first `devices` local devices of every
    process (all local devices by default): `devices × jax.process_count()` in all,
    ordered by process, so that each process owns one contiguous block of every batch.

    Raises:
      SettingError (a ValueError): `devices` is not in [1, local device count].
    """
    local = jax.local_device_count()
    if devices is None:
        devices = local
    if not isinstance(devices, int | np.integer) or not 1 <= devices <= local:
        platform = jax.local_devices()[0].platform
        raise SettingError(
            f"devices={devices}: this process has {local} local {platform} device(s); "
            f"use a number from 1 to {local} (on CPU, more devices come from "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N)",
            settings=("devices",),
        )
    chosen = []
    for process in range(jax.process_count()):
        owned = [d for d in jax.devices() if d.process_index == process]
        chosen.extend(sorted(owned, key=lambda d: d.id)[: int(devices)])
    return Mesh(np.array(chosen), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (params, optimiser state, metrics)."""
    return NamedSharding(mesh, P())


def data_sharding(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split over `"data"`: `(batch, ...)` arrays."""
    return NamedSharding(mesh, P(DATA_AXIS))


def batches_sharding(mesh: Mesh) -> NamedSharding:
    """`(n_batches, batch, ...)` arrays: the batch axis (axis 1) split over `"data"`."""
    return NamedSharding(mesh, P(None, DATA_AXIS))


def check_batch_divisible(batch_size: int, mesh: Mesh) -> None:
    """Raises a SettingError naming both numbers when `batch_size` does not split evenly
    over the mesh's devices (fnn does not pad: every device gets the same share)."""
    n = mesh.size
    if batch_size % n:
        lower = max(batch_size // n, 1) * n
        raise SettingError(
            f"batch size {batch_size} is not divisible by the {n} devices of the mesh; "
            f"use a multiple of {n}, e.g. {lower} or {lower + n}, or a number of devices "
            f"that divides {batch_size}",
            settings=("batch_size", "mesh"),
        )


def _global(leaf: Any, sharding: NamedSharding, global_shape: tuple[int, ...]) -> jax.Array:
    """A global array from this process's part of `leaf` (all of it when replicated);
    a jax.Array stays on its device (no round trip through the host)."""
    local = leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)
    return jax.make_array_from_process_local_data(sharding, local, global_shape)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Copies every array leaf of `tree` to every device of `mesh` (`P()`). In a
    multi-process run every process must pass the same values (same seed, same data)."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda a: _global(a, sharding, np.shape(a)), tree)


def process_rows(batch_size: int, mesh: Mesh) -> slice:
    """The rows of every global batch that this process feeds: its devices' shares,
    one contiguous block (`make_data_mesh` orders the devices by process)."""
    index_map = data_sharding(mesh).addressable_devices_indices_map((batch_size,))
    # JAX types the values `Index | None`; an addressable device always has an index
    indices: list[tuple[slice, ...]] = [*index_map.values()]  # type: ignore[list-item]
    starts = [index[0].start or 0 for index in indices]
    stops = [batch_size if index[0].stop is None else index[0].stop for index in indices]
    return slice(min(starts), max(stops))


def shard_batch(local_batch: Any, mesh: Mesh, batch_size: int) -> Any:
    """A global batch of `batch_size` examples sharded along `"data"`, from this
    process's rows of it (`local_batch`: arrays `(rows, ...)`, `process_rows` long; in a
    single-process run, the whole batch).

    Raises:
      ValueError: `batch_size` is not divisible by the mesh's device count, or the local
        rows are not this process's share.
    """
    check_batch_divisible(batch_size, mesh)
    rows = process_rows(batch_size, mesh)
    sharding = data_sharding(mesh)

    def one(a):
        if np.shape(a)[0] != rows.stop - rows.start:
            raise ShapeError(
                f"this process feeds rows {rows.start}:{rows.stop} of every batch of "
                f"{batch_size}, i.e. {rows.stop - rows.start} examples; got {np.shape(a)[0]}"
            )
        return _global(a, sharding, (batch_size, *np.shape(a)[1:]))

    return jax.tree.map(one, local_batch)


def local_copy(tree: Any) -> Any:
    """A single-device copy of a replicated tree (this process's first shard of each
    leaf), for evaluation and checkpoints outside the mesh."""
    device = jax.local_devices()[0]

    def one(a):
        if isinstance(a, jax.Array) and len(a.sharding.device_set) > 1:
            if not a.is_fully_replicated:
                raise SettingError("local_copy: expected replicated arrays, got a sharded one")
            return jax.device_put(a.addressable_data(0), device)
        return a

    return jax.tree.map(one, tree)


# ---------------------------------------------------------------------------------------
# Sharded training


def make_sharded_train_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    mesh: Mesh,
) -> Callable:
    """Returns `step(train_state, batch, key=None) -> (train_state, metrics)`, the data-
    parallel form of `fnn.train.make_train_step`. batch_norm's statistics are those of the
    global batch (XLA reduces them across devices) and dropout's mask is drawn for the
    global batch, so the step equals the one-device step.

    Inputs: the train state replicated over `mesh` (`replicate`), the batch `(x, y)`
    sharded along `"data"` (`shard_batch`), or plain arrays, which jit places so.
    Outputs: replicated. The batch size must be divisible by `mesh.size` (a SettingError
    naming both numbers otherwise).

    On a mesh of several CPU devices each call waits for its result (`_waits`).
    """
    step = make_train_step(net, loss, optimizer, mode, jit=False)
    rep, data = replicated(mesh), data_sharding(mesh)
    compiled = jax.jit(step, in_shardings=(rep, (data, data), rep), out_shardings=(rep, rep))
    wait = _waits(mesh)

    @functools.wraps(step)
    def sharded_step(train_state, batch, key=None):
        check_batch_divisible(int(np.shape(batch[0])[0]), mesh)
        out = compiled(train_state, batch, key)
        return jax.block_until_ready(out) if wait else out

    # the jitted function, for lowering and benchmarks (an attribute no function type declares)
    sharded_step.compiled = compiled  # type: ignore[attr-defined]
    return sharded_step


def _waits(mesh: Mesh) -> bool:
    """Whether a step on `mesh` waits for its result before returning: on several CPU
    devices, where many sharded steps in flight at once were seen to stall XLA's
    in-process collectives (docs/scaling.md says when and how). CPU meshes are for
    testing, so the lost overlap costs little; GPU and TPU steps stay asynchronous."""
    return mesh.size > 1 and mesh.devices.flat[0].platform == "cpu"


_epoch_order = jax.jit(epoch_order, static_argnums=(2, 3))


@jax.jit
def _take(a: jax.Array, rows: jax.Array) -> jax.Array:
    """`a[rows]` on a's device: `(n, ...)` and `(n_batches, r)` give `(n_batches, r, ...)`."""
    return jnp.take(a, rows, axis=0)


@functools.lru_cache(maxsize=32)
def make_sharded_epoch_fn(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    mesh: Mesh,
    batch_size: int,
) -> Callable:
    """Returns `epoch(train_state, key, epoch, x, y) -> (train_state, mean_loss)`, the
    data-parallel form of `fnn.train.make_epoch_fn` (same signature, same batches, same
    dropout keys, one compiled `lax.scan` per epoch).

    `x: (n, ...)`, `y: (n, ...)` are the whole training split, the same in every process.
    Each epoch every process computes the order (`fnn.train.batching.epoch_order`),
    gathers only its rows of every batch (`process_rows`) on its first local device, and
    the batches become one global array `(n_batches, batch_size, ...)` sharded along axis
    1 over `"data"`. The train state comes in and goes out replicated (`replicate`).
    """
    check_batch_divisible(batch_size, mesh)
    step = make_train_step(net, loss, optimizer, mode, jit=False)
    rep, batches = replicated(mesh), batches_sharding(mesh)

    def scan_epoch(train_state, xs, ys, key, epoch):
        train_state, losses = scan_steps(step, train_state, (xs, ys), step_key(key, epoch))
        return train_state, jnp.mean(losses)

    compiled = jax.jit(
        scan_epoch,
        in_shardings=(rep, batches, batches, rep, rep),
        out_shardings=(rep, rep),
    )
    rows = process_rows(batch_size, mesh)
    wait = _waits(mesh)

    def run_epoch(train_state, key, epoch, x, y):
        n = int(np.shape(x)[0])
        check_batch_size(batch_size, n)
        order = _epoch_order(key, epoch, n, batch_size)[:, rows]  # this process's rows
        x, y = as_array(x), as_array(y)
        n_batches = order.shape[0]
        xs = _global(_take(x, order), batches, (n_batches, batch_size, *x.shape[1:]))
        ys = _global(_take(y, order), batches, (n_batches, batch_size, *y.shape[1:]))
        out = compiled(train_state, xs, ys, key, epoch)
        return jax.block_until_ready(out) if wait else out

    return run_epoch


# ---------------------------------------------------------------------------------------
# Big layers: fully sharded data parallel


def fsdp_shardings(params: Params, mesh: Mesh, *, min_rows: int = 1) -> Any:
    """Shardings for `params` that split every 2-D weight's rows (`W: (in, out)`) over
    `"data"` when `in` is divisible by the mesh size (and at least `min_rows`); other
    leaves (biases, odd shapes) stay replicated. A tree of `NamedSharding`s like params."""
    n = mesh.size

    def one(a):
        shape = tuple(a.shape) if hasattr(a, "shape") else np.shape(a)
        if len(shape) == 2 and shape[0] % n == 0 and shape[0] >= min_rows:
            return NamedSharding(mesh, P(DATA_AXIS, None))
        return replicated(mesh)

    return jax.tree.map(one, params)


def shard_params(params: Params, shardings: Any) -> Params:
    """Places `params` by `shardings` (from `fsdp_shardings`), from the full values that
    every process holds."""
    return jax.tree.map(lambda a, s: _global(a, s, np.shape(a)), params, shardings)


def make_fsdp_train_step(
    net: Layer,
    loss: Loss,
    optimizer: optax.GradientTransformation,
    mode: str = "manual",
    *,
    mesh: Mesh,
    params: Params,
) -> tuple[Callable, TrainState]:
    """A data-parallel step whose large weights stay sharded (FSDP): the batch is split
    over `"data"` and so are the rows of each dense weight (`fsdp_shardings`); XLA gathers
    a weight where a matmul needs it whole and reduce-scatters its gradient. Optimiser
    state follows the params' shardings; running statistics are replicated.

    Returns `(step, train_state)`: `step(train_state, batch, key=None)` as in
    `make_sharded_train_step`, and the initial train state, sharded.
    """
    shardings = fsdp_shardings(params, mesh)
    train_state = TrainState.create(net, shard_params(params, shardings), optimizer)
    # The same rule for the optimiser state: moments shaped like a weight are sharded like
    # it; scalars such as Adam's step count are replicated.
    opt_shardings = fsdp_shardings(jax.eval_shape(optimizer.init, train_state.params), mesh)
    opt_state = jax.jit(optimizer.init, out_shardings=opt_shardings)(train_state.params)
    train_state = TrainState(train_state.params, opt_state, replicate(train_state.state, mesh))
    step = make_train_step(net, loss, optimizer, mode, jit=False)
    rep, data = replicated(mesh), data_sharding(mesh)
    state_shardings = TrainState(shardings, opt_shardings, rep)
    compiled = jax.jit(
        step,
        in_shardings=(state_shardings, (data, data), rep),
        out_shardings=(state_shardings, rep),
    )
    wait = _waits(mesh)

    def fsdp_step(train_state, batch, key=None):
        check_batch_divisible(int(np.shape(batch[0])[0]), mesh)
        out = compiled(train_state, batch, key)
        return jax.block_until_ready(out) if wait else out

    return fsdp_step, train_state


def describe_mesh(mesh: Mesh) -> str:
    """E.g. "8 cpu devices on 1 process" — for logs and metrics."""
    platform = mesh.devices.flat[0].platform
    processes = len({d.process_index for d in mesh.devices.flat})
    plural = "es" if processes > 1 else ""
    return f"{mesh.size} {platform} devices on {processes} process{plural}"
