"""The checkpoint file: one `.npz` of arrays plus a JSON metadata entry, written
atomically (temporary file, fsync, rename) and read back checked (format, version,
completeness, a SHA-256 over every leaf). `fnn.train.checkpoint` puts trees in and takes
them out; this module handles the bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnn.errors import CheckpointError  # defined there; importable from here as before

FORMAT = "fnn.checkpoint"
VERSION = 1
METADATA = "metadata"
TREES = ("params", "opt_state", "state")
MAX_LISTED = 12  # differences listed in one error message


def storable(leaf: Any) -> tuple[np.ndarray, dict]:
    """The leaf as a numpy array numpy can save, and its shape/dtype record."""
    array = np.asarray(leaf)
    dtype = array.dtype
    if dtype.kind not in "biufc":  # bfloat16, float8 ... : store the bits as uint
        if dtype.itemsize not in (1, 2, 4, 8):
            raise CheckpointError(f"cannot store a leaf of dtype {dtype}")
        array = array.view(np.dtype(f"uint{8 * dtype.itemsize}"))
    info = {"shape": list(array.shape), "dtype": dtype.name, "stored_as": array.dtype.name}
    return np.require(array, requirements="C"), info  # keeps 0-d arrays 0-d


def digest(leaves: dict[str, list[dict]], arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every leaf's tree, path, dtype, shape and bytes, in file order."""
    sha = hashlib.sha256()
    for tree_name in TREES:
        for info in leaves[tree_name]:
            array = arrays[f"{tree_name}/{info['path']}"]
            header = f"{tree_name}/{info['path']}|{info['dtype']}|{list(array.shape)}|"
            sha.update(header.encode())
            sha.update(np.require(array, requirements="C").tobytes())
    return sha.hexdigest()


def json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | jax.Array):
        return np.asarray(value).tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise CheckpointError(f"{type(value).__name__} is not JSON-able")


def atomic_write(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Writes the npz to a temporary file next to `path`, syncs it, renames it over."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub: a key may be allow_pickle
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Makes the rename durable where the platform allows fsync on a directory."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Reads every array and the metadata, checking format, completeness and checksum."""
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path} is not an fnn checkpoint: a .npy, not an .npz")
            with z:
                arrays = {name: np.asarray(z[name]) for name in z.files}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        raise CheckpointError(
            f"{path} is not a readable fnn checkpoint (truncated or corrupt .npz): "
            f"{type(error).__name__}: {error}"
        ) from None
    except Exception as error:  # unpickling errors and other reader failures
        raise CheckpointError(
            f"{path} is not a readable fnn checkpoint: {type(error).__name__}: {error}"
        ) from None
    if METADATA not in arrays:
        raise CheckpointError(f"{path} is not an fnn checkpoint: it has no {METADATA!r} entry")
    metadata = _parse_metadata(arrays.pop(METADATA), path)
    missing = [
        f"{tree_name}/{info['path']}"
        for tree_name in TREES
        for info in metadata["leaves"][tree_name]
        if f"{tree_name}/{info['path']}" not in arrays
    ]
    if missing:
        raise CheckpointError(
            f"{path} is corrupt: arrays listed in its metadata are missing: "
            + ", ".join(missing[:MAX_LISTED])
        )
    if digest(metadata["leaves"], arrays) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its arrays do not match their sha256 checksum")
    return arrays, metadata


def _parse_metadata(entry: np.ndarray, path: Path) -> dict:
    try:
        metadata = json.loads(str(entry))
    except (json.JSONDecodeError, UnicodeError) as error:
        raise CheckpointError(
            f"{path} is corrupt: its metadata is not valid JSON: {error}"
        ) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not an fnn checkpoint (metadata format is not {FORMAT!r})"
        )
    if metadata.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {metadata.get('version')!r}; this fnn reads "
            f"version {VERSION}"
        )
    needed = ("epoch", "key", "config", "history", "leaves", "sha256")
    absent = [name for name in needed if name not in metadata]
    leaves = metadata.get("leaves")
    if isinstance(leaves, dict):
        leaves.setdefault("state", [])  # written before state was stored: none
    if absent or not isinstance(leaves, dict) or any(t not in leaves for t in TREES):
        raise CheckpointError(f"{path} is corrupt: its metadata lacks {absent or ['leaves']}")
    for tree_name in TREES:
        for info in leaves[tree_name]:
            if not _valid_leaf_record(info):
                raise CheckpointError(f"{path} is corrupt: bad leaf record {info!r}")
    return metadata


def _valid_leaf_record(info: Any) -> bool:
    if not isinstance(info, dict) or not isinstance(info.get("path"), str):
        return False
    if not isinstance(info.get("shape"), list) or not all(
        isinstance(d, int) for d in info["shape"]
    ):
        return False
    if not isinstance(info.get("dtype"), str):
        return False
    try:
        jnp.dtype(info["dtype"])
    except TypeError:
        return False
    return True
