"""Test configuration: 64-bit types on (every test states its dtypes), implicit rank
promotion raises (as in equinox's test suite), and warnings are errors (pyproject).

XLA compiles with its backend optimisations off: the suite's cost is compiling hundreds
of small programs, whose run time is negligible; the arithmetic is the same, and every
comparison in a test runs under the same flags.
"""

import os

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]
).strip()

import jax  # noqa: E402  (after XLA_FLAGS: the backend reads them when it starts)

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
