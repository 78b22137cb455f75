"""Test configuration: 64-bit types on (every test states its dtypes), implicit rank
promotion raises (as in equinox's test suite), and warnings are errors (pyproject).

XLA compiles with its backend optimisations off, with the CPU backend's older loop
emitters instead of its MLIR fusion emitters (about 3x faster to compile a small program,
measured on the catalogue's checks), and each program's LLVM module in one piece instead
of split for parallel code generation (about 30% less compile time on this 2-core
machine): the suite's cost is compiling hundreds of small programs, whose run time is
negligible. The operations are the same; elementwise functions may round differently in
the last bit, and every comparison in a test runs under the same flags. (XLA aborts on
an unknown flag: should a jaxlib drop one of these, drop it here.)

The commands' compilation cache (FNN_CACHE_DIR) lives in a temporary directory for the
whole session, shared by the subprocesses the tests start, never in the user's home.
"""

import atexit
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
    [
        os.environ.get("XLA_FLAGS", ""),
        "--xla_backend_optimization_level=0",
        "--xla_cpu_use_fusion_emitters=false",
        "--xla_cpu_parallel_codegen_split_count=1",
    ]
).strip()

os.environ["FNN_CACHE_DIR"] = tempfile.mkdtemp(prefix="fnn-test-cache-")
atexit.register(shutil.rmtree, os.environ["FNN_CACHE_DIR"], True)


def pytest_configure(config):
    """JAX's switches, in each process that runs tests: not in pytest-xdist's controller,
    which only hands out files (importing JAX there cost ~2.5 s of the two cores)."""
    controller = (
        not hasattr(config, "workerinput")
        and bool(getattr(config.option, "numprocesses", 0))
        and not config.getvalue("collectonly")
    )
    if controller:
        return
    import jax  # after XLA_FLAGS: the backend reads them when it starts

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")


# The longest test files, handed out first: with pytest-xdist (`--dist loadfile`, a file per
# worker), a long file handed out last leaves the other worker idle until it ends. A
# scheduling hint only (a file missing here runs in its place, after these).
LONGEST_FIRST = (
    "train/test_parallel.py",
    "project/test_docs.py",
    "check/test_catalogue.py",
    "project/test_types.py",
    "core/test_robustness.py",
    "bench/test_bench.py",
    "cli/test_cli_train.py",
    "lm/test_gpt.py",
    "check/test_mutation.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    here = os.path.dirname(__file__)

    def order(item):
        return rank.get(os.path.relpath(item.path, here).replace(os.sep, "/"), len(rank))

    items.sort(key=order)  # stable: every other file keeps its place
