"""The timing harness is fair: each round in a seeded random order, each timed call right
after an untimed one of the same unit (so what the unit before it leaves behind is not
timed), the A/A twin, a wrong gradient flagged as "mismatch" in the grid, and the grid's
float64 scoped to its float64 cases. Units here are plain Python functions (and sleeps
far above the timer's resolution): these test the rules, not how fast anything is."""

import time

import jax
import jax.numpy as jnp
import pytest

import fnn
from fnn import bench
from fnn.bench import grid
from fnn.bench.measure import time_rounds
from fnn.bench.report import format_report


def _logging_units(names, log):
    def make(name):
        def unit(state):
            log.append(name)
            return state + 1

        return unit

    return {name: make(name) for name in names}


def test_each_round_is_a_seeded_random_order_with_a_warm_call_before_each_timed_one():
    log = []
    units = _logging_units("abc", log)
    states = dict.fromkeys(units, 0)
    times, orders = time_rounds(units, states, 12, seed=3)
    assert [len(t) for t in times.values()] == [12, 12, 12]
    assert all(sorted(order) == ["a", "b", "c"] for order in orders)
    assert log == [name for order in orders for name in order for _ in range(2)]  # warm, timed
    assert states == dict.fromkeys("abc", 24)  # every call threads its state
    firsts = {order[0] for order in orders}
    assert firsts == {"a", "b", "c"}, "with 12 rounds, each unit comes first at least once"
    assert time_rounds(units, dict.fromkeys(units, 0), 12, seed=3)[1] == orders  # seeded
    assert time_rounds(units, dict.fromkeys(units, 0), 12, seed=4)[1] != orders


def test_what_a_unit_leaves_behind_falls_on_the_warm_call_not_the_timed_one():
    """`noisy` leaves the machine dirty (as numpy's BLAS threads spin after a call); the
    next call of `victim` pays 30 ms for it. Timed fairly, the victim measures ~1 ms."""
    dirty = [False]

    def noisy(state):
        dirty[0] = True
        return state

    def victim(state):
        time.sleep(0.03 if dirty[0] else 0.001)
        dirty[0] = False
        return state

    units = {"noisy": noisy, "victim": victim}
    times, _ = time_rounds(units, dict.fromkeys(units, None), 7)
    assert max(times["victim"]) < 0.02, times["victim"]

    # the check can fail: timed without the warm call, the victim pays after every noisy
    paid = []
    for _ in range(3):
        noisy(None)
        start = time.perf_counter()
        victim(None)
        paid.append(time.perf_counter() - start)
    assert min(paid) > 0.02


TINY = dict(repeats=1, steps={"tutorial": 2})


def _problem():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 8), jnp.float32)
    return fnn.mlp([12, 3]), fnn.softmax_cross_entropy(), x, jnp.arange(16) % 3


def test_the_aa_twin_is_the_same_unit_timed_as_another_impl():
    records = bench.compare(*_problem(), steps=1, repeats=3, quick=True,
                            impls=["manual", "autodiff"], aa="manual")  # fmt: skip
    found = {r["impl"]: r for r in records}
    assert list(found) == ["manual", "autodiff", "manual_aa"]
    twin = found["manual_aa"]
    assert twin["status"] == "ok" and twin["aa_ratio"] > 0
    assert twin["rel_grad_err"] == found["manual"]["rel_grad_err"]
    assert twin["hlo_ops"] == found["manual"]["hlo_ops"]  # the same compiled program
    assert all(len(r["positions"]) == 3 and r["rotation_seed"] == 0 for r in records)
    assert [sorted(p) for p in zip(*(r["positions"] for r in records), strict=True)] == [
        [0, 1, 2]
    ] * 3  # each round, each impl at its own place
    # the text report.md holds (`bench.report` writes it, with charts: test_bench_api.py)
    assert "A/A: manual_aa / manual = " in format_report(records)


@pytest.mark.slow
def test_the_grid_flags_a_wrong_gradient_and_scopes_float64_to_its_float64_cases(monkeypatch):
    build = grid.build_jax_impl

    def tripled_manual(name, problem):  # the grid's own manual impl, its gradient 3 x
        impl = build(name, problem)
        if name == "manual":
            grads = impl.grads
            impl.grads = lambda: jax.tree.map(lambda g: 3 * g, grads())
        return impl

    monkeypatch.setattr(grid, "build_jax_impl", tripled_manual)
    with jax.enable_x64(False):
        records = bench.run_benchmarks(
            ["tutorial"], ["manual", "autodiff"], ["float32", "float64"], **TINY, aa=None,
            progress=lambda s: None,
        )  # fmt: skip
        assert not jax.config.jax_enable_x64, "the caller's setting is left as it was"
    found = {(r["impl"], r["dtype"]): r for r in records}
    assert sorted(found) == [(i, d) for i in ("autodiff", "manual") for d in ("float32", "float64")]
    for dtype, tol in (("float32", "0.0001"), ("float64", "1e-10")):
        assert found["manual", dtype]["status"] == "mismatch", found["manual", dtype]
        assert f"rel_grad_err 2.00e+00 > {tol}" in found["manual", dtype]["note"]
        assert found["autodiff", dtype]["status"] == "ok"
