"""Test configuration: 64-bit types on (every test states its dtypes), implicit rank
promotion raises (as in equinox's test suite), and warnings are errors (pyproject)."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
