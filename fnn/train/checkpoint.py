"""Checkpoints: an atomic save and a validated load of a training run's state.

A checkpoint is ONE ``.npz`` file (a zip of ``.npy`` arrays), readable without fnn:

- ``params/<path>``, ``opt_state/<path>`` and ``state/<path>`` (the running statistics
  of stateful layers such as batch_norm; none for most networks): one array per leaf,
  ``<path>`` being the leaf's `jax.tree_util.keystr` path, e.g. ``params/[0]['W']`` or
  ``opt_state/[0].mu[0]['W']``. Dtypes numpy cannot store natively (bfloat16, ...) are
  stored as unsigned integers of the same width and named in the metadata.
- ``metadata``: a 0-d string array holding JSON::

      {"format": "fnn.checkpoint", "version": 1, "epoch": 3,
       "key": {"data": [0, 42], "dtype": "uint32", "impl": null},
       "config": {...}, "history": {"train_loss": [...], ...},
       "leaves": {"params": [{"path": "[0]['W']", "shape": [64, 32], "dtype": "float32",
                              "stored_as": "float32"}, ...], "opt_state": [...]},
       "sha256": "<hex digest of every leaf's path, dtype, shape and bytes, in order>"}

  ``key`` is the PRNG key's raw data; ``impl`` names the PRNG implementation of a typed
  key (`jax.random.key`), null for a raw uint32 key (`jax.random.PRNGKey`). ``history``
  may hold ``NaN`` (Python's JSON reads it).

Reading it without fnn::

    z = np.load("checkpoint.npz")
    meta = json.loads(str(z["metadata"]))
    W0 = z["params/[0]['W']"]; print(meta["epoch"], meta["history"])

Writes are atomic: the file is written to a temporary file in the same directory,
flushed and fsynced, then renamed over the target with `os.replace`, so a crash leaves
either the old checkpoint or the new one, never half of one.

Loads are checked: the tree structure (leaf paths), shapes and dtypes must match the
``params_like``, ``opt_state_like`` and ``state_like`` trees (e.g. a fresh init,
``optimizer.init`` and ``fnn.init_state``),
and a `CheckpointError` says exactly what differs; a missing, truncated or corrupt file
raises a `CheckpointError` too, never a silent load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fnn.core import as_array
from fnn.train.checkpoint_file import (
    FORMAT,
    MAX_LISTED,
    METADATA,
    TREES,
    VERSION,
    CheckpointError,
    atomic_write,
    digest,
    json_default,
    read,
    storable,
)

__all__ = [
    "FORMAT",
    "METADATA",
    "TREES",
    "VERSION",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]


class Checkpoint(NamedTuple):
    """A training run's state, as `load_checkpoint` returns it.

    Attributes:
      params: the parameter pytree, with the structure of `params_like`.
      opt_state: the optimiser state, with the structure of `opt_state_like`.
      epoch: the number of epochs completed.
      key: the PRNG key for what comes next (typed or raw uint32, as it was saved).
      config: the run's configuration (a JSON-able dict).
      history: per-epoch metrics (a JSON-able dict, e.g. of lists).
      state: the running statistics, with the structure of `state_like` (`()` for none).
    """

    params: Any
    opt_state: Any
    epoch: int
    key: jax.Array
    config: dict
    history: dict
    state: Any = ()


def save_checkpoint(
    path: str | Path,
    *,
    params: Any,
    opt_state: Any,
    epoch: int,
    key: jax.Array,
    config: dict,
    history: dict,
    state: Any = (),
) -> Path:
    """Writes a checkpoint to `path` atomically and returns `path` as a Path.

    Arguments:
      path: the file to write (conventionally ending in `.npz`; the name is used as
        given). Its directory is created if needed. An existing file is replaced only
        once the new one is fully written and synced.
      params: a pytree of arrays.
      opt_state: the optimiser state, a pytree of arrays (optax NamedTuples, `()`, ...).
      epoch: the number of completed epochs (a non-negative int).
      key: a PRNG key, typed (`jax.random.key`) or raw uint32 (`jax.random.PRNGKey`).
      config: a JSON-able dict (numpy and JAX scalars and arrays are converted).
      history: a JSON-able dict of per-epoch metrics.
      state: the running statistics of stateful layers (`()`, the default, for none).

    Raises:
      CheckpointError: a bad epoch, or a config/history that JSON cannot hold.
    """
    path = Path(path)
    if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
        raise CheckpointError(f"epoch must be a non-negative int, got {epoch!r}")
    arrays: dict[str, np.ndarray] = {}
    leaves: dict[str, list[dict]] = {}
    for tree_name, tree in (("params", params), ("opt_state", opt_state), ("state", state)):
        leaves[tree_name] = []
        for leaf_path, leaf in _leaves_with_paths(tree):
            stored, info = storable(leaf)
            info["path"] = leaf_path
            leaves[tree_name].append(info)
            arrays[f"{tree_name}/{leaf_path}"] = stored
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "key": _key_to_json(key),
        "config": config,
        "history": history,
        "leaves": leaves,
        "sha256": digest(leaves, arrays),
    }
    try:
        text = json.dumps(metadata, default=json_default)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"config and history must be JSON-able: {error}") from None
    arrays[METADATA] = np.array(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, arrays)
    return path


def load_checkpoint(
    path: str | Path, *, params_like: Any, opt_state_like: Any, state_like: Any = ()
) -> Checkpoint:
    """Reads the checkpoint at `path`, checked against `params_like`, `opt_state_like`
    and `state_like`.

    Arguments:
      path: a file written by `save_checkpoint`.
      params_like: a pytree with the expected structure, shapes and dtypes: the params
        of a fresh init, or `jax.eval_shape` of it (`jax.ShapeDtypeStruct` leaves, no
        compute); its values are not used.
      opt_state_like: the same for the optimiser state (e.g. `optimizer.init(params)`).
      state_like: the same for the running statistics (`fnn.init_state(net, params)`;
        `()`, the default, for a network without state).

    Returns:
      A `Checkpoint` whose params and opt_state are rebuilt with the like-trees' treedefs
      (so optax NamedTuples come back as themselves). A leaf comes back as a numpy array
      where the like-tree holds a numpy array or scalar, else as a `jax.Array` (default
      device); bit for bit as saved either way.

    Raises:
      CheckpointError: a missing file, a file that is not a readable fnn checkpoint
        (truncated, corrupt, checksum mismatch), or a structure, shape or dtype that does
        not match, listing each leaf path with what was expected and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
    arrays, metadata = read(path)
    problems: list[str] = []
    rebuilt = {}
    likes = (("params", params_like), ("opt_state", opt_state_like), ("state", state_like))
    for tree_name, like in likes:
        rebuilt[tree_name] = _rebuild(tree_name, like, metadata["leaves"], arrays, problems)
    if problems:
        listed = problems[:MAX_LISTED]
        if len(problems) > MAX_LISTED:
            listed.append(f"... and {len(problems) - MAX_LISTED} more")
        raise CheckpointError(
            f"checkpoint {path} does not match the network and optimiser "
            f"({len(problems)} difference(s)):\n  " + "\n  ".join(listed)
        )
    return Checkpoint(
        params=rebuilt["params"],
        opt_state=rebuilt["opt_state"],
        epoch=int(metadata["epoch"]),
        key=_key_from_json(metadata["key"], path),
        config=metadata["config"],
        history=metadata["history"],
        state=rebuilt["state"],
    )


def read_metadata(path: str | Path) -> dict:
    """The checkpoint's JSON metadata (epoch, config, history, leaves), checked for
    corruption like `load_checkpoint` but without a network to compare against."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
    return read(path)[1]


def _leaves_with_paths(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(key_path), leaf) for key_path, leaf in flat]


def _key_to_json(key: Any) -> dict:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        data = np.asarray(jax.random.key_data(key))
        impl = str(jax.random.key_impl(key))
    else:
        data = np.asarray(key)
        impl = None
    if data.dtype.kind not in "iu":
        raise CheckpointError(f"key must be a PRNG key or integer key data, got {data.dtype}")
    return {
        "data": data.tolist(),
        "shape": list(data.shape),
        "dtype": data.dtype.name,
        "impl": impl,
    }


def _rebuild(
    tree_name: str, like: Any, saved: dict[str, list[dict]], arrays: dict, problems: list[str]
) -> Any:
    """Rebuilds one tree with `like`'s treedef, appending every mismatch to `problems`."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    expected = [(jax.tree_util.keystr(key_path), leaf) for key_path, leaf in flat]
    found = {info["path"]: info for info in saved[tree_name]}
    expected_paths = [p for p, _ in expected]
    lacking = [p for p in expected_paths if p not in found]
    extra = [p for p in found if p not in set(expected_paths)]
    for p in lacking:
        problems.append(f"{tree_name}{p}: expected by the network, not in the checkpoint")
    for p in extra:
        problems.append(f"{tree_name}{p}: in the checkpoint, not expected by the network")
    if lacking or extra:
        problems.append(f"{tree_name}: expected structure {treedef}")
        return None
    leaves = []
    for leaf_path, like_leaf in expected:
        info = found[leaf_path]
        want_shape, want_dtype = tuple(np.shape(like_leaf)), _dtype_of(like_leaf)
        got_shape, got_dtype = tuple(info["shape"]), np.dtype(jnp.dtype(info["dtype"]))
        if want_shape != got_shape or want_dtype != got_dtype:
            problems.append(
                f"{tree_name}{leaf_path}: expected shape {want_shape} {want_dtype.name}, "
                f"found {got_shape} {got_dtype.name}"
            )
            continue
        array = arrays[f"{tree_name}/{leaf_path}"]
        if array.dtype != got_dtype:
            array = array.view(got_dtype)
        host = isinstance(like_leaf, np.ndarray | np.generic | int | float | complex | bool)
        leaves.append(array if host else as_array(array))
    if len(leaves) != len(expected):
        return None
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _dtype_of(leaf: Any) -> np.dtype:
    return np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else np.asarray(leaf).dtype


def _key_from_json(entry: dict, path: Path) -> jax.Array:
    try:
        data = np.asarray(entry["data"], dtype=np.dtype(entry["dtype"]))
        impl = entry.get("impl")
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is corrupt: bad PRNG key entry: {error}") from None
    if impl is None:
        return as_array(data)
    return jax.random.wrap_key_data(as_array(data), impl=impl)
