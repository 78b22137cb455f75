"""MNIST and Fashion-MNIST from local files: the four IDX files (raw or gzip) or a Keras-style
`.npz`. Nothing is ever downloaded."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from fnn.data.raw import DataError, RawData

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Reads one IDX file (raw, or gzip when the name ends in `.gz`) into a numpy array.

    The IDX format: two zero bytes, a type byte (0x08 = unsigned byte, ...), the number of
    dimensions, then each dimension as a big-endian int32, then the data, row-major.

    Raises:
      DataError: naming the file, when it is not IDX, is truncated, or has extra bytes.
    """
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read IDX file {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
            "expected 0000 followed by a type byte and the number of dimensions"
        )
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated: its header needs {header} bytes, has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">i4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: shape {shape} needs {expected} bytes, the file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def mnist_candidates(name: str, data_dir: Path) -> list[Path]:
    """Every file `load_mnist_arrays` looks for, in the order it looks."""
    paths = []
    for folder in _folders(name, data_dir):
        paths.append(folder / f"{name}.npz")
        for stem in IDX_FILES.values():
            paths += _idx_paths(folder, stem)
    return paths


def load_mnist_arrays(name: str, data_dir: str | Path | None) -> RawData:
    """Reads MNIST or Fashion-MNIST from `data_dir`, with its own train/test split.

    Looks in `data_dir`, then in `data_dir/<name>/`, for `<name>.npz` first and then the
    four IDX files (each raw or `.gz`). The IDX file names are the same for both sets:
    the files found are taken to be the set asked for.

    Returns:
      RawData with `x` of shape `(n, 28, 28)` scaled to [0, 1] and int32 labels.
    """
    if data_dir is None:
        raise DataError(
            f"the {name} data set is read from local files: set data_dir= to a directory with "
            f"{name}.npz or the four IDX files ({', '.join(IDX_FILES.values())}, raw or "
            ".gz); fnn never downloads",
            settings=("data_dir",),
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist or is not a directory",
            settings=("data_dir",),
        )
    arrays, sources = _read_files(name, data_dir)
    for key in ("x_train", "x_test"):
        arrays[key] = _check_images(arrays[key], sources[key])
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[0] != y.reshape(-1).shape[0]:
            raise DataError(f"{name}: {x.shape[0]} {split} images but {y.size} {split} labels")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{name}: {split} labels must be in 0..9, found {y.min()}..{y.max()}")
    return RawData(
        "classification",
        arrays["x_train"].astype(np.float64) / 255.0,
        arrays["y_train"].reshape(-1).astype(np.int32),
        10,
        tuple(range(10)),
        arrays["x_test"].astype(np.float64) / 255.0,
        arrays["y_test"].reshape(-1).astype(np.int32),
    )


def _folders(name: str, data_dir: Path) -> tuple[Path, Path]:
    """Where the files may be, in the order they are looked for."""
    return data_dir, data_dir / name


def _idx_paths(folder: Path, stem: str) -> tuple[Path, Path]:
    """One IDX file's two spellings, raw first."""
    return folder / stem, folder / f"{stem}.gz"


def _read_files(name: str, data_dir: Path) -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """The four arrays (keyed as `NPZ_KEYS`) from the first folder that holds them, and the
    file each came from; a DataError naming what is missing when no folder does."""
    for folder in _folders(name, data_dir):
        npz = folder / f"{name}.npz"
        if npz.is_file():
            return _read_npz(npz), dict.fromkeys(NPZ_KEYS, npz)
        found = {key: _first_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(found.values()):
            paths = {key: path for key, path in found.items() if path is not None}  # all
            return {key: read_idx(path) for key, path in paths.items()}, paths
        if any(found.values()):
            missing = [
                f"{stem} (or {stem}.gz)" for key, stem in IDX_FILES.items() if not found[key]
            ]
            raise DataError(
                f"{name}: {folder} holds some IDX files but not: {', '.join(missing)}",
                settings=("data_dir",),
            )
    looked = "\n  ".join(str(p) for p in mnist_candidates(name, data_dir))
    raise DataError(
        f"{name}: no data files found in {data_dir}; looked for:\n  {looked}",
        settings=("data_dir",),
    )


def _first_file(folder: Path, stem: str) -> Path | None:
    return next((path for path in _idx_paths(folder, stem) if path.is_file()), None)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [key for key in NPZ_KEYS if key not in z.files]
            if missing:
                raise DataError(
                    f"{path} lacks arrays {missing}; it needs {', '.join(NPZ_KEYS)} "
                    f"(found {', '.join(z.files) or 'none'})"
                )
            return {key: np.asarray(z[key]) for key in NPZ_KEYS}
    except DataError:
        raise
    except Exception as error:  # zipfile.BadZipFile, OSError, ValueError, EOFError ...
        raise DataError(f"cannot read {path}: {type(error).__name__}: {error}") from None


def _check_images(x: np.ndarray, path: Path) -> np.ndarray:
    """Accepts `(n, 28, 28)` or `(n, 28, 28, 1)` pixel arrays in 0..255; returns 3-D."""
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{path}: expected images of shape (n, 28, 28), got {x.shape}")
    return x
