"""`fnn.core.as_array`: `jnp.asarray` without a compile per numpy shape, the same array."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from fnn.core import as_array

VALUES = [
    np.arange(6.0).reshape(2, 3),
    np.arange(6, dtype=np.int64),
    np.array([True, False]),
    np.ones(3, np.float16),
    np.ones(3, ml_dtypes.bfloat16),  # a checkpoint's bfloat16 leaf comes back as this
    np.zeros((0, 4), np.float32),
    np.float32(2.5),  # numpy scalars, lists, Python numbers and JAX arrays: jnp.asarray
    [1, 2, 3],
    3.0,
    jnp.ones(2),
]


@pytest.mark.parametrize("x64", [True, False])
@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_as_array_is_jnp_asarray(value, x64):
    with jax.enable_x64(x64):
        got, want = as_array(value), jnp.asarray(value)
        assert isinstance(got, jax.Array)
        assert (got.dtype, got.shape, got.weak_type) == (want.dtype, want.shape, want.weak_type)
        assert got.committed == want.committed
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
