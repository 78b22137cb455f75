"""Data sets for training, all local: no network access, ever.

`load_dataset(name, ...)` returns a `Dataset` of numpy arrays, split into train and test
and standardised with statistics of the train split only:

======================  ==============  =====================================================
name                    task            source
======================  ==============  =====================================================
``digits``              classification  scikit-learn's bundled 8×8 digits (10 classes)
``breast_cancer``       binary          scikit-learn's bundled Wisconsin breast cancer
``iris``                classification  scikit-learn's bundled iris (3 classes)
``wine``                classification  scikit-learn's bundled wine (3 classes)
``diabetes``            regression      scikit-learn's bundled diabetes (target standardised)
``tutorial``            binary          the seed tutorial's random data (soft targets)
``mnist``               classification  local IDX files or ``mnist.npz`` in ``data_dir``
``fashion_mnist``       classification  local IDX files or ``fashion_mnist.npz``
``csv``                 inferred        a user's CSV file: numeric features + a target column
``text``                language_model  a local text file's bytes (``text_path``, ``context``)
======================  ==============  =====================================================

Targets, by task (``n`` examples):

- ``"classification"``: int32 labels of shape ``(n,)`` in ``0..num_classes-1``.
- ``"binary"``: float targets of shape ``(n, 1)`` in ``[0, 1]`` (hard 0/1, or soft).
- ``"language_model"``: int32 next-token ids ``(n, T)``, the inputs shifted by one byte.
- ``"regression"``: float targets of shape ``(n, k)``, standardised with the train
  split's mean and standard deviation (`Dataset.target_scale` keeps them). R² is
  unchanged by that affine map, and MSE is in units of the target's standard deviation.

Features have shape ``(n, *feature_shape)`` in the requested float dtype. The split is
deterministic for a given seed and stratified by class for classification and hard binary
targets; MNIST and Fashion-MNIST keep their own 60 000 / 10 000 split.

Every problem a user can cause (unknown name, missing files, a corrupt file, a bad CSV
cell) raises `DataError`, a `ValueError` (`fnn.errors.SettingError`), with a message that
says what to fix and, in `settings`, the arguments that would fix it (`load_dataset`'s:
`csv_path`, `data_dir`, ...).

Modules: `registry` (`Dataset`, `DATASETS`, `load_dataset`), `bundled` (scikit-learn's sets,
the tutorial data), `mnist` (IDX and .npz files), `tabular` (CSV files), `text` (a text
file's bytes in windows), `split` (split and standardisation), `raw` (`DataError`,
`RawData`, shared checks).
"""

from fnn.data.bundled import TUTORIAL_EXAMPLES, TUTORIAL_FEATURES, tutorial_data
from fnn.data.mnist import IDX_FILES, NPZ_KEYS, load_mnist_arrays, mnist_candidates, read_idx
from fnn.data.raw import DTYPES, DataError, RawData
from fnn.data.registry import DATASETS, IMAGE_DATASETS, Dataset, load_dataset
from fnn.data.split import class_proportions, standardize, train_test_split
from fnn.data.tabular import MAX_CSV_CLASSES, read_csv

__all__ = [
    "DATASETS",
    "DTYPES",
    "IDX_FILES",
    "IMAGE_DATASETS",
    "MAX_CSV_CLASSES",
    "NPZ_KEYS",
    "TUTORIAL_EXAMPLES",
    "TUTORIAL_FEATURES",
    "DataError",
    "Dataset",
    "RawData",
    "class_proportions",
    "load_dataset",
    "load_mnist_arrays",
    "mnist_candidates",
    "read_csv",
    "read_idx",
    "standardize",
    "train_test_split",
    "tutorial_data",
]
