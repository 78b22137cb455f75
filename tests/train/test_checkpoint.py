"""fnn.train.checkpoint: round trips, readable format, mismatches, corruption, atomicity."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fnn
from fnn.train import checkpoint as ckpt
from fnn.train.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint


def _mlp_params(features, dtype, seed):
    """Random params shaped like `fnn.mlp(features[1:])`'s: dense, relu (), dense, ...

    Built in numpy (no per-shape compilation), so the tests stay fast; the round trip
    test below uses a real `fnn.init` and a real optax step.
    """
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(features[:-1], features[1:], strict=False)):
        if i:
            layers.append(())  # the activation between dense layers
        W = rng.normal(size=(n_in, n_out)).astype(dtype)
        b = rng.normal(size=(n_out,)).astype(dtype)
        layers.append({"W": jnp.asarray(W), "b": jnp.asarray(b)})
    return tuple(layers)


def _state(dtype=np.float64, features=(8, 4, 3), optimizer="adam", seed=0):
    """Params and an optax state with no all-zero leaves (adam: count 1, random mu, nu)."""
    params = _mlp_params(features, dtype, seed)
    if optimizer == "sgd":
        return params, optax.sgd(0.1).init(params)
    (adam, *rest) = optax.adam(1e-2).init(params)
    moments = [_mlp_params(features, dtype, seed + k) for k in (100, 200)]
    adam = adam._replace(count=jnp.asarray(1, jnp.int32), mu=moments[0], nu=moments[1])
    return params, (adam, *rest)


def _save(path, params, opt_state, **overrides):
    kwargs = dict(
        params=params,
        opt_state=opt_state,
        epoch=3,
        key=jax.random.key(42),
        config={"dataset": "digits", "lr": 0.01, "hidden": (128, 64)},
        history={"train_loss": [1.5, np.float32(0.75)], "test_accuracy": [0.5, float("nan")]},
    )
    kwargs.update(overrides)
    return save_checkpoint(path, **kwargs)


def _assert_trees_identical(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(
            np.asarray(x).reshape(-1).view(np.uint8), np.asarray(y).reshape(-1).view(np.uint8)
        )


def test_round_trip_of_an_mlp_and_adam_state(tmp_path):
    net = fnn.mlp([4, 3])
    optimizer = optax.adam(1e-2)

    def initial(key):  # fnn.mlp init, then one adam step so mu, nu and count are not zeros
        params = fnn.init(net, key, (8,), jnp.float64)
        opt_state = optimizer.init(params)
        grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.3), params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = jax.jit(initial)(jax.random.key(0))  # one compilation, not many
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    like_params, like_opt = jax.eval_shape(initial, jax.random.key(1))  # ShapeDtypeStructs
    loaded = load_checkpoint(path, params_like=like_params, opt_state_like=like_opt)
    assert isinstance(loaded, Checkpoint)
    _assert_trees_identical(loaded.params, params)
    _assert_trees_identical(loaded.opt_state, opt_state)
    assert isinstance(loaded.opt_state[0], optax.ScaleByAdamState)
    assert loaded.opt_state[0].count.dtype == jnp.int32 and int(loaded.opt_state[0].count) == 1
    assert isinstance(loaded.params[0]["W"], jax.Array)
    assert loaded.epoch == 3
    assert loaded.config == {"dataset": "digits", "lr": 0.01, "hidden": [128, 64]}
    assert loaded.history["train_loss"] == [1.5, 0.75]
    assert np.isnan(loaded.history["test_accuracy"][1])
    np.testing.assert_array_equal(
        jax.random.key_data(loaded.key), jax.random.key_data(jax.random.key(42))
    )
    assert jax.random.key_impl(loaded.key) == jax.random.key_impl(jax.random.key(42))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_bit_for_bit(tmp_path, dtype):
    params, opt_state = _state(dtype)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    like_params, like_opt = _state(dtype, seed=9)
    loaded = load_checkpoint(path, params_like=like_params, opt_state_like=like_opt)
    _assert_trees_identical(loaded.params, params)
    _assert_trees_identical(loaded.opt_state, opt_state)
    assert loaded.params[0]["W"].dtype == dtype


def test_raw_key_empty_states_and_bfloat16(tmp_path):
    params = {"W": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3) / 3, "b": jnp.zeros((3,))}
    opt_state = (optax.EmptyState(), ())
    raw_key = jax.random.PRNGKey(7)  # uint32 (2,)
    path = _save(tmp_path / "c.npz", params, opt_state, key=raw_key, epoch=0)
    loaded = load_checkpoint(path, params_like=params, opt_state_like=opt_state)
    _assert_trees_identical(loaded.params, params)
    assert loaded.opt_state == (optax.EmptyState(), ())
    assert loaded.key.dtype == jnp.uint32
    np.testing.assert_array_equal(loaded.key, raw_key)


def test_readable_without_fnn(tmp_path):
    params, opt_state = _state(np.float32)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    with np.load(path) as z:  # allow_pickle stays False
        meta = json.loads(str(z["metadata"]))
        W0 = z["params/[0]['W']"]
        count = z["opt_state/[0].count"]
    assert meta["format"] == "fnn.checkpoint" and meta["epoch"] == 3
    assert meta["history"]["train_loss"] == [1.5, 0.75]
    np.testing.assert_array_equal(W0, np.asarray(params[0]["W"]))
    assert count.dtype == np.int32 and int(count) == 1
    paths = [leaf["path"] for leaf in meta["leaves"]["params"]]
    assert paths == [
        jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)
    ]


def test_wrong_shape_names_leaf_and_shapes(tmp_path):
    params, opt_state = _state(np.float32, features=(8, 4, 3))
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    like_params, like_opt = _state(np.float32, features=(8, 5, 3))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, params_like=like_params, opt_state_like=like_opt)
    message = str(info.value)
    assert "params[0]['W']: expected shape (8, 5) float32, found (8, 4) float32" in message
    assert "opt_state[0].mu[2]['W']: expected shape (5, 3) float32, found (4, 3) float32" in message


def test_wrong_dtype_names_leaf(tmp_path):
    params, opt_state = _state(np.float64)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    like_params, like_opt = _state(np.float32)
    with pytest.raises(
        CheckpointError,
        match=r"params\[2\]\['b'\]: expected shape \(3,\) float32, "
        r"found \(3,\) float64",
    ):
        load_checkpoint(path, params_like=like_params, opt_state_like=like_opt)


def test_wrong_structure_names_missing_and_extra_leaves(tmp_path):
    params, opt_state = _state(np.float32, features=(8, 4, 3))
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    like_params, like_opt = _state(np.float32, features=(8, 4, 4, 3))
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, params_like=like_params, opt_state_like=like_opt)
    message = str(info.value)
    assert "params[4]['W']: expected by the network, not in the checkpoint" in message
    sgd_params, sgd_state = _state(np.float32, optimizer="sgd")
    with pytest.raises(
        CheckpointError, match=r"opt_state\[0\]\.count: in the checkpoint, not expected"
    ):
        load_checkpoint(path, params_like=sgd_params, opt_state_like=sgd_state)


def test_missing_file_names_path(tmp_path):
    params, opt_state = _state(np.float32)
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(CheckpointError, match="no checkpoint at .*nowhere.npz"):
        load_checkpoint(missing, params_like=params, opt_state_like=opt_state)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda data: data[: len(data) // 2],
        lambda data: data[:10],
        lambda data: b"",
        lambda data: b"this is not a checkpoint at all\n" * 10,
        lambda data: np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes(),
    ],
    ids=["half", "head", "empty", "text", "random"],
)
def test_truncated_or_garbage_file_raises(tmp_path, corrupt):
    params, opt_state = _state(np.float32)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(CheckpointError, match="not a readable fnn checkpoint"):
        load_checkpoint(path, params_like=params, opt_state_like=opt_state)


def _rewrite(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_tampered_array_fails_checksum(tmp_path):
    params, opt_state = _state(np.float32)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    arrays["params/[0]['W']"] = arrays["params/[0]['W']"] + np.float32(1)
    _rewrite(path, arrays)
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path, params_like=params, opt_state_like=opt_state)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: a.pop("metadata"), "no 'metadata' entry"),
        (lambda a: a.update(metadata=np.array("{not json")), "not valid JSON"),
        (lambda a: a.pop("params/[2]['b']"), r"missing: params/\[2\]\['b'\]"),
        (lambda a: a.update(metadata=np.array('{"format": "other"}')), "not an fnn checkpoint"),
    ],
    ids=["no-metadata", "bad-json", "missing-array", "foreign"],
)
def test_bad_metadata_or_missing_arrays(tmp_path, edit, message):
    params, opt_state = _state(np.float32)
    path = _save(tmp_path / "ckpt.npz", params, opt_state)
    with np.load(path) as z:
        arrays = {name: z[name] for name in z.files}
    edit(arrays)
    _rewrite(path, arrays)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path, params_like=params, opt_state_like=opt_state)


def _write_half_then_fail(file, array, **kwargs):
    file.write(b"\x93NUMPY partial bytes")
    raise OSError("No space left on device")


def _fsync_fails(fd):
    raise OSError("I/O error")


@pytest.mark.parametrize(
    "target, replacement",
    [(np.lib.format, "write_array"), (os, "fsync")],
    ids=["mid-write", "fsync"],
)
def test_failed_write_keeps_old_checkpoint_and_no_temp_file(
    tmp_path, monkeypatch, target, replacement
):
    params, opt_state = _state(np.float32)
    path = _save(tmp_path / "ckpt.npz", params, opt_state, epoch=1)
    before = path.read_bytes()
    new_params, new_opt = _state(np.float32, seed=5)
    fail = _write_half_then_fail if replacement == "write_array" else _fsync_fails
    monkeypatch.setattr(target, replacement, fail)
    with pytest.raises(OSError):
        _save(path, new_params, new_opt, epoch=2)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    assert load_checkpoint(path, params_like=params, opt_state_like=opt_state).epoch == 1


def test_overwrite_and_nested_directory(tmp_path):
    params, opt_state = _state(np.float32)
    path = tmp_path / "run" / "deep" / "ckpt.npz"
    _save(path, params, opt_state, epoch=1)
    _save(path, params, opt_state, epoch=2)
    assert load_checkpoint(path, params_like=params, opt_state_like=opt_state).epoch == 2
    assert ckpt.read_metadata(path)["epoch"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.npz"]


def test_bad_epoch_and_unserialisable_config(tmp_path):
    params, opt_state = _state(np.float32)
    with pytest.raises(CheckpointError, match="epoch"):
        _save(tmp_path / "a.npz", params, opt_state, epoch=-1)
    with pytest.raises(CheckpointError, match="JSON"):
        _save(tmp_path / "a.npz", params, opt_state, config={"f": object()})
    assert not any(tmp_path.iterdir())


def test_a_checkpoint_holding_a_pickled_object_array_is_refused(tmp_path):
    """Checkpoints load without pickle: an object array (which only pickle can read) is
    a clear CheckpointError, never code run at load time."""
    params = {"W": np.ones((2, 2), np.float32)}
    path = save_checkpoint(
        tmp_path / "c.npz", params=params, opt_state=(), epoch=1, key=np.zeros(2, np.uint32),
        config={}, history={},
    )  # fmt: skip
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["params/['W']"] = np.array([object(), 1], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)  # numpy pickles an object array
    with pytest.raises(CheckpointError, match="not a readable fnn checkpoint.*[Oo]bject arrays"):
        load_checkpoint(tmp_path / "evil.npz", params_like=params, opt_state_like=())
