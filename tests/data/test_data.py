"""Tests for fnn.data: bundled sets, split, standardisation, IDX/npz files, CSV, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fnn.data import (
    DATASETS,
    IDX_FILES,
    DataError,
    Dataset,
    class_proportions,
    load_dataset,
    read_idx,
    standardize,
    train_test_split,
)

BUNDLED = {
    # name: (task, n_features, num_classes, n_examples)
    "digits": ("classification", 64, 10, 1797),
    "breast_cancer": ("binary", 30, 1, 569),
    "iris": ("classification", 4, 3, 150),
    "wine": ("classification", 13, 3, 178),
    "diabetes": ("regression", 10, 1, 442),
    "tutorial": ("binary", 100, 1, 200),
}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_sets_shapes_and_tasks(name):
    task, features, classes, n = BUNDLED[name]
    ds = load_dataset(name, dtype="float32")
    assert isinstance(ds, Dataset)
    assert (ds.name, ds.task, ds.num_classes, ds.feature_shape) == (
        name,
        task,
        classes,
        (features,),
    )
    assert ds.num_train + ds.num_test == n
    assert ds.num_test == round(0.2 * n)
    assert ds.x_train.shape == (ds.num_train, features) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (ds.num_test, features) and ds.x_test.dtype == np.float32
    if task == "classification":
        assert ds.y_train.shape == (ds.num_train,) and ds.y_train.dtype == np.int32
        assert set(np.unique(ds.y_train)) == set(range(classes))
        assert ds.output_width == classes
    else:
        assert ds.y_train.shape == (ds.num_train, 1) and ds.y_train.dtype == np.float32
        assert ds.y_test.shape == (ds.num_test, 1)
        assert ds.output_width == 1
    if name == "breast_cancer":
        assert set(np.unique(ds.y_train)) == {0.0, 1.0}


def test_all_names_are_listed():
    assert set(BUNDLED) | {"mnist", "fashion_mnist", "csv", "text"} == set(DATASETS)


def test_float64_and_unknown_dtype():
    ds = load_dataset("iris", dtype="float64")
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int32
    with pytest.raises(DataError, match="valid dtypes: float32, float64"):
        load_dataset("iris", dtype="int8")


def test_same_seed_same_split_other_seed_differs():
    a = load_dataset("wine", seed=3, dtype="float64")
    b = load_dataset("wine", seed=3, dtype="float64")
    c = load_dataset("wine", seed=4, dtype="float64")
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_test, c.x_test)


def test_split_is_stratified():
    labels = np.repeat(np.arange(3, dtype=np.int64), [50, 30, 20])  # 50%, 30%, 20%
    x = np.arange(100, dtype=np.float64).reshape(100, 1)
    x_tr, x_te, y_tr, y_te = train_test_split(x, labels, test_fraction=0.2, seed=0, stratify=True)
    assert np.bincount(y_te).tolist() == [10, 6, 4]
    assert np.bincount(y_tr).tolist() == [40, 24, 16]
    # every example lands in exactly one split, with its own label
    np.testing.assert_array_equal(np.sort(np.concatenate([x_tr, x_te])[:, 0]), x[:, 0])
    np.testing.assert_array_equal(
        labels[np.concatenate([x_tr, x_te])[:, 0].astype(int)], np.concatenate([y_tr, y_te])
    )


def test_bundled_split_keeps_class_proportions():
    ds = load_dataset("digits", dtype="float32")
    train = class_proportions(ds.y_train, ds.num_classes)
    test = class_proportions(ds.y_test, ds.num_classes)
    np.testing.assert_allclose(train, test, atol=0.01)


def test_standardize_uses_train_statistics_only():
    rng = np.random.default_rng(0)
    x_train = rng.normal(5.0, 3.0, size=(200, 3))
    x_train[:, 2] = 7.0  # a constant feature
    x_test = rng.normal(5.0, 3.0, size=(50, 3)) + 1.0
    tr, te, mean, std = standardize(x_train, x_test)
    np.testing.assert_allclose(tr[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(tr[:, :2].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(tr[:, 2], 0.0)
    assert std[2] == 1.0
    np.testing.assert_allclose(te, (x_test - x_train.mean(0)) / std, rtol=1e-12)
    assert abs(te[:, 0].mean()) > 0.1  # the test split is not re-centred on its own


def test_loaded_set_is_standardised_on_train():
    ds = load_dataset("breast_cancer", dtype="float64")
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-10)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, rtol=1e-10)
    assert np.abs(ds.x_test.mean(axis=0)).max() > 1e-3  # test statistics were not used


def test_diabetes_target_standardised_with_train_scale():
    ds = load_dataset("diabetes", dtype="float64")
    np.testing.assert_allclose(ds.y_train.mean(), 0.0, atol=1e-10)
    np.testing.assert_allclose(ds.y_train.std(), 1.0, rtol=1e-10)
    mean, std = ds.target_scale
    # the targets as scikit-learn's load_diabetes reads them (np.loadtxt of its bundled
    # file), found without importing scikit-learn (seconds of scipy): the slow test below
    # compares fnn's reader with scikit-learn's loaders themselves
    from fnn.data.bundled import _sklearn_files

    original = np.sort(np.loadtxt(_sklearn_files() / "diabetes_target.csv.gz"))
    restored = np.sort(np.concatenate([ds.y_train, ds.y_test])[:, 0] * std[0] + mean[0])
    np.testing.assert_allclose(restored, original, rtol=1e-12)


def test_tutorial_is_the_seeded_uniform_data_unstandardised():
    ds = load_dataset("tutorial", dtype="float64", standardize_features=False, seed=7)
    rng = np.random.default_rng(7)
    x = rng.uniform(0.0, 1.0, size=(200, 100))
    y = rng.uniform(0.0, 1.0, size=(200, 1))
    rows = np.concatenate([ds.x_train, ds.x_test])
    order = np.argsort(rows[:, 0])
    np.testing.assert_array_equal(rows[order], x[np.argsort(x[:, 0])])
    targets = np.concatenate([ds.y_train, ds.y_test])[order]
    np.testing.assert_array_equal(targets, y[np.argsort(x[:, 0])])


def test_digits_unflattened_images():
    ds = load_dataset("digits", flatten=False, dtype="float32")
    assert ds.feature_shape == (8, 8, 1)
    assert ds.x_train.shape == (ds.num_train, 8, 8, 1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError) as info:
        load_dataset("cifar")
    for name in DATASETS:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_bad_test_fraction():
    with pytest.raises(DataError, match="test_fraction"):
        load_dataset("iris", test_fraction=1.0)


# ----------------------------------------------------------------------------- MNIST files


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file for a uint8 array: magic 0000 08 ndim, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _fake_mnist(n_train: int = 20, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(n_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": (np.arange(n_test) % 10).astype(np.uint8),
    }


def _write_idx(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = _idx_bytes(arrays[key])
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files(tmp_path, gz, name):
    arrays = _fake_mnist()
    _write_idx(tmp_path, arrays, gz)
    ds = load_dataset(name, data_dir=tmp_path, dtype="float32")
    assert (ds.task, ds.num_classes, ds.feature_shape) == ("classification", 10, (784,))
    assert ds.x_train.shape == (20, 784) and ds.x_test.shape == (10, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.y_train, arrays["y_train"])  # own split, own order
    raw = load_dataset(name, data_dir=tmp_path, dtype="float64", standardize_features=False)
    np.testing.assert_allclose(raw.x_test, arrays["x_test"].reshape(10, 784) / 255.0)
    mean, std = raw.x_train.mean(), raw.x_train.std()
    np.testing.assert_allclose(
        load_dataset(name, data_dir=tmp_path, dtype="float64").x_test,
        (raw.x_test - mean) / std,
        rtol=1e-10,
    )


def test_npz_file_in_subfolder_unflattened(tmp_path):
    arrays = _fake_mnist()
    (tmp_path / "fashion_mnist").mkdir()
    np.savez(tmp_path / "fashion_mnist" / "fashion_mnist.npz", **arrays)
    ds = load_dataset("fashion_mnist", data_dir=tmp_path, flatten=False, dtype="float32")
    assert ds.feature_shape == (28, 28, 1)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_test.shape == (10, 28, 28, 1)
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="lacks arrays.*y_train"):
        load_dataset("mnist", data_dir=tmp_path)


def test_missing_files_lists_every_name(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "mnist.npz" in message
    for stem in IDX_FILES.values():
        assert stem in message and f"{stem}.gz" in message


def test_some_idx_files_missing(tmp_path):
    _write_idx(tmp_path, _fake_mnist(), gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", data_dir=tmp_path)


def test_no_data_dir_says_it_is_needed():
    with pytest.raises(DataError, match="data_dir=") as info:
        load_dataset("mnist")
    assert "--" not in str(info.value)  # the library's arguments, not a front end's flags


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda data: data[: len(data) // 2], "truncated"),
        (lambda data: b"\x12\x34" + data[2:], "not an IDX file"),
        (lambda data: data + b"\x00", "longer than its header says"),
        (lambda data: data[:6], "truncated"),
    ],
    ids=["half", "magic", "extra", "header"],
)
def test_corrupt_idx_names_the_file(tmp_path, corrupt, message):
    _write_idx(tmp_path, _fake_mnist(), gz=False)
    bad = tmp_path / IDX_FILES["x_train"]
    bad.write_bytes(corrupt(bad.read_bytes()))
    with pytest.raises(DataError, match=message) as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(bad) in str(info.value)


def test_corrupt_gzip_names_the_file(tmp_path):
    _write_idx(tmp_path, _fake_mnist(), gz=True)
    bad = tmp_path / f"{IDX_FILES['y_test']}.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read IDX file") as info:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(bad) in str(info.value)


def test_read_idx_round_trip(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(_idx_bytes(array))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), array)


# ----------------------------------------------------------------------------- CSV


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.csv"
    path.write_text(text)
    return path


def test_csv_with_header_classification(tmp_path):
    rows = [f"{i},{i * 0.5},{[3, 5, 8][i % 3]}" for i in range(30)]
    path = _write(tmp_path, "a,b,label\n" + "\n".join(rows) + "\n")
    ds = load_dataset("csv", csv_path=path, target_column="label", dtype="float64")
    assert (ds.task, ds.num_classes, ds.classes, ds.feature_shape) == (
        "classification",
        3,
        (3, 5, 8),
        (2,),
    )
    assert ds.y_train.dtype == np.int32 and set(np.unique(ds.y_train)) == {0, 1, 2}
    assert ds.num_train == 24 and ds.num_test == 6
    np.testing.assert_array_equal(np.bincount(ds.y_test), [2, 2, 2])  # stratified


def test_csv_without_header_regression_by_index(tmp_path):
    rows = [f"{i * 0.1},{i},{i * 1.5 + 0.25}" for i in range(40)]
    path = _write(tmp_path, "\n".join(rows) + "\n")
    ds = load_dataset("csv", csv_path=path, target_column=2, dtype="float32")
    assert ds.task == "regression" and ds.y_train.shape == (32, 1) and ds.output_width == 1
    assert ds.y_train.dtype == np.float32 and ds.target_scale is not None


def test_csv_task_override(tmp_path):
    rows = [f"{i},{i % 2 * 4 + 1}" for i in range(20)]  # targets 1 and 5
    path = _write(tmp_path, "x,y\n" + "\n".join(rows) + "\n")
    ds = load_dataset("csv", csv_path=path, task="binary", dtype="float32")
    assert ds.task == "binary" and ds.classes == (1, 5)
    assert set(np.unique(ds.y_train)) == {0.0, 1.0} and ds.y_train.shape == (16, 1)
    assert load_dataset("csv", csv_path=path, task="regression").task == "regression"


def test_csv_non_numeric_cell_names_row_and_column(tmp_path):
    path = _write(tmp_path, "a,b,label\n1,2,0\n3,4,1\n\n5,oops,0\n")
    with pytest.raises(DataError, match=r"row 5, column 'b': 'oops'"):
        load_dataset("csv", csv_path=path, target_column="label")


def test_csv_empty_cell_and_unknown_column(tmp_path):
    path = _write(tmp_path, "a,b\n1,\n")
    with pytest.raises(DataError, match=r"row 2, column 'b': an empty cell"):
        load_dataset("csv", csv_path=path)
    path = _write(tmp_path, "a,b\n1,2\n")
    with pytest.raises(DataError, match="no column 'c'; columns: a, b"):
        load_dataset("csv", csv_path=path, target_column="c")


def test_csv_missing_file_and_ragged_row(tmp_path):
    with pytest.raises(DataError, match="cannot read CSV file"):
        load_dataset("csv", csv_path=tmp_path / "nope.csv")
    path = _write(tmp_path, "a,b\n1,2\n3\n")
    with pytest.raises(DataError, match="row 3: 1 cells, expected 2"):
        load_dataset("csv", csv_path=path)
    with pytest.raises(DataError, match="csv_path"):
        load_dataset("csv")


# ----------------------------------------------------------------------------- settings


def test_data_error_is_a_setting_error():
    from fnn.core import SettingError

    assert issubclass(DataError, SettingError) and issubclass(DataError, ValueError)
    assert DataError("message").settings == ()


def test_missing_csv_names_the_csv_setting(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("csv")
    assert info.value.settings == ("csv_path",) and "--" not in str(info.value)
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_path=tmp_path / "nope.csv")
    assert info.value.settings == ("csv_path",)


def test_missing_mnist_directory_names_the_data_dir_setting(tmp_path):
    for data_dir in (None, tmp_path / "nowhere", tmp_path):  # unset, absent, no files in it
        with pytest.raises(DataError) as info:
            load_dataset("mnist", data_dir=data_dir)
        assert info.value.settings == ("data_dir",)


@pytest.mark.parametrize(
    "arguments, settings",
    [
        (dict(name="cifar"), ("name",)),
        (dict(name="iris", dtype="int8"), ("dtype",)),
        (dict(name="iris", test_fraction=0.0), ("test_fraction",)),
    ],
    ids=["dataset", "dtype", "test_fraction"],
)
def test_bad_settings_are_named(arguments, settings):
    name = arguments.pop("name")
    with pytest.raises(DataError) as info:
        load_dataset(name, **arguments)
    assert info.value.settings == settings


def test_bad_target_column_names_it_and_a_bad_file_names_nothing(tmp_path):
    path = _write(tmp_path, "a,b\n1,2\n3,4\n")
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_path=path, target_column="c")
    assert info.value.settings == ("target_column",)
    path = _write(tmp_path, "a,b\n1,oops\n")
    with pytest.raises(DataError) as info:
        load_dataset("csv", csv_path=path)
    assert info.value.settings == ()
    _write_idx(tmp_path / "idx", _fake_mnist(), gz=False)
    bad = tmp_path / "idx" / IDX_FILES["x_train"]
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "idx")
    assert info.value.settings == ()


@pytest.mark.slow  # a fresh interpreter, then scikit-learn's import (seconds)
def test_bundled_sets_are_read_without_scikit_learn_and_equal_its_loaders():
    """fnn reads scikit-learn's bundled files itself (no import of scikit-learn and scipy
    at start-up); the arrays equal what scikit-learn's loaders return, bit for bit."""
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from fnn.data.bundled import _read_bundled
names = ["load_digits", "load_breast_cancer", "load_iris", "load_wine", "load_diabetes"]
mine = {name: _read_bundled(name) for name in names}
assert "sklearn" not in sys.modules and "scipy" not in sys.modules, "imported"
from sklearn import datasets
for name in names:
    x, y = getattr(datasets, name)(return_X_y=True)
    assert np.array_equal(mine[name][0], x) and np.array_equal(mine[name][1], y), name
    assert mine[name][0].dtype == x.dtype, name
print("equal")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "equal", done.stderr[-2000:]
