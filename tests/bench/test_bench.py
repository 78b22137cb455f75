"""The benchmark harness on a tiny workload: every field present and sane, files written,
and the `fnn bench` command's flags. No timed assertions: speed goals live in benchmarks."""

import ast
import dataclasses
import importlib.util
import inspect
import json
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from fnn import bench
from fnn.bench.grid import build_all, build_impl, run_workload
from fnn.bench.impls import PEER_MODULES, Impl
from fnn.bench.measure import count_residuals, hlo_counts, machine_info, rel_grad_err
from fnn.bench.peers import PEER_BUILDERS
from fnn.bench.problems import gradients, make_problem
from fnn.bench.records import CSV_FIELDS, BenchRecord, field_list
from fnn.bench.reference import build_numpy_impl
from fnn.bench.report import read_results, write_csv, write_json, write_results
from fnn.bench.workloads import WORKLOADS
from fnn.cli import main

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
FIELDS = (
    "workload",
    "impl",
    "dtype",
    "device_kind",
    "platform",
    "jax_version",
    "batch",
    "params",
    "step_ms_median",
    "step_ms_iqr",
    "compile_s",
    "flops_per_s",
    "peak_flops_per_s",
    "peak_fraction",
    "temp_bytes",
    "argument_bytes",
    "output_bytes",
    "peak_bytes_in_use",
    "residual_arrays",
    "hlo_gemms",
    "hlo_fusions",
    "hlo_ops",
    "rel_grad_err",
    "ratio_vs_autodiff",
)


def _grid(impls):
    return bench.run_benchmarks(
        ["tiny"], impls, ["float32"], repeats=2, quick=True, progress=lambda line: None
    )


@pytest.fixture(scope="module")
def records(small_peak_probe):
    """manual, autodiff and numpy on the tiny workload. The other JAX impls run in a slow
    test; torch, whose import alone takes several seconds, in another."""
    return _grid(["manual", "autodiff", "numpy"])


def _ok(records, impl):
    (record,) = [r for r in records if r["impl"] == impl and r["status"] == "ok"]
    return record


def _assert_every_field_sane(r):
    assert set(FIELDS) <= set(r), set(FIELDS) - set(r)
    assert r["workload"] == "tiny" and r["dtype"] == "float32" and r["platform"] == "cpu"
    assert r["step_ms_median"] > 0 and r["step_ms_iqr"] >= 0
    assert r["compile_s"] > 0
    assert 0 < r["peak_fraction"] < 1.5
    assert r["temp_bytes"] >= 0 and r["argument_bytes"] > 0 and r["output_bytes"] > 0
    assert r["hlo_gemms"] >= 6 and r["hlo_ops"] >= r["hlo_fusions"] > 0
    assert r["rel_grad_err"] < 1e-5
    assert r["ratio_vs_autodiff"] > 0
    assert r["params"] == 8 * 16 + 16 + 16 * 16 + 16 + 16 * 4 + 4


def test_manual_and_autodiff_have_every_field_with_sane_values(records):
    for impl in ("manual", "autodiff"):
        _assert_every_field_sane(_ok(records, impl))


@pytest.mark.slow
def test_scan_and_custom_vjp_impls_have_every_field_with_sane_values():
    """The other JAX impls, with autodiff (custom_vjp's ratio is taken against it)."""
    records = _grid(["autodiff", "manual_scan", "autodiff_scan", "custom_vjp"])
    for impl in ("manual_scan", "autodiff_scan", "custom_vjp"):
        _assert_every_field_sane(_ok(records, impl))


def test_manual_backward_keeps_fewer_residuals_than_autodiff(records):
    manual, autodiff = _ok(records, "manual"), _ok(records, "autodiff")
    assert 0 < manual["residual_arrays"] < autodiff["residual_arrays"]
    assert manual["residual_bytes"] < autodiff["residual_bytes"]


def test_numpy_peer(records):
    r = _ok(records, "numpy")
    assert r["step_ms_median"] > 0 and r["rel_grad_err"] < 1e-5 and r["temp_bytes"] is None


PEERS = ("equinox", "flax_nnx", "torch")  # torch_compile: torch.compile, far slower to build


def _assert_peer_status(record):
    """A peer whose library is installed runs ("ok", a "peer" record, its gradient at
    fnn's initial params within fnn's autodiff); one whose library is missing is
    "skipped"; "error" (it crashed) is never acceptable."""
    installed = importlib.util.find_spec(PEER_MODULES[record["impl"]]) is not None
    expected = "ok" if installed else "skipped"
    assert record["status"] == expected, (
        f"{record['impl']}: status {record['status']!r}, expected {expected!r} "
        f"({PEER_MODULES[record['impl']]} {'is' if installed else 'is not'} installed): "
        f"{record.get('note')}"
    )
    if installed:
        assert record["rel_grad_err"] < 1e-5 and record["kind"] == "peer", record


@pytest.mark.slow  # importing torch alone takes seconds
def test_each_peer_runs_where_its_library_is_installed_and_is_skipped_where_not():
    records = _grid(list(PEERS))
    for name in PEERS:
        (record,) = [r for r in records if r["impl"] == name]
        _assert_peer_status(record)


def test_a_crashing_peer_is_an_error_record_that_the_peer_check_rejects(monkeypatch):
    """A peer whose builder raises gets an "error" record (the grid goes on) and
    `_assert_peer_status` flags it; a peer whose library is missing gets "skipped", which
    it accepts. torch's module is pointed at numpy, installed everywhere, so that its
    builder runs whether or not torch is; equinox's at a module that does not exist."""

    def crash(problem):
        raise RuntimeError("the peer's API changed")

    monkeypatch.setitem(PEER_MODULES, "torch", "numpy")
    monkeypatch.setitem(PEER_BUILDERS, "torch", crash)
    monkeypatch.setitem(PEER_MODULES, "equinox", "fnn_no_such_module")  # "missing"
    problem = make_problem(WORKLOADS["tiny"], "float32")
    built, records = build_all(
        ["torch", "equinox"], problem, {"workload": "tiny", "dtype": "float32"},
        build_impl, progress=lambda line: None,
    )  # fmt: skip
    assert built == {}
    crashed, missing = records
    assert crashed["status"] == "error" and "the peer's API changed" in crashed["note"]
    with pytest.raises(AssertionError, match="status 'error', expected 'ok'"):
        _assert_peer_status(crashed)
    assert missing["status"] == "skipped" and "not installed" in missing["note"]
    _assert_peer_status(missing)  # a missing library is no failure


@pytest.mark.slow  # draws the four charts
def test_writes_json_csv_report_and_charts(records, tmp_path):
    paths = write_results(records, tmp_path, suffix="-test")
    names = {p.name for p in paths}
    assert names == {
        "results-test.json",
        "results-test.csv",
        "report-test.md",
        "time-test.png",
        "ratio-test.png",
        "peak-test.png",
    }
    loaded = json.loads((tmp_path / "results-test.json").read_text())
    assert [r["impl"] for r in loaded] == [r["impl"] for r in records]
    header = (tmp_path / "results-test.csv").read_text().splitlines()[0].split(",")
    assert {"workload", "impl", "step_ms_median", "rel_grad_err", "temp_bytes"} <= set(header)
    report = (tmp_path / "report-test.md").read_text()
    assert "## tiny, float32" in report and "| manual |" in report
    assert all((tmp_path / n).stat().st_size > 1000 for n in names if n.endswith(".png"))


def test_numpy_transcription_matches_fnn_gradients():
    problem = make_problem(WORKLOADS["tiny"], "float64")
    impl = build_numpy_impl(problem)
    assert rel_grad_err(impl.grads(), gradients(problem, "autodiff")) < 1e-12


def test_count_residuals_excludes_arguments():
    def f(w, x):
        return jnp.sum(jnp.tanh(x @ w))

    w = jnp.ones((3, 4), jnp.float32)
    x = jnp.ones((2, 3), jnp.float32)
    arrays, nbytes = count_residuals(f, w, x)
    assert arrays >= 1 and nbytes >= 2 * 4 * 4


def test_hlo_counts_and_rel_grad_err():
    text = "\n".join(
        [
            "  %a = f32[2,2]{1,0} dot(%x, %y), lhs_contracting_dims={1}",
            "  %b = f32[2,2]{1,0} fusion(%a), kind=kLoop, calls=%c",
            '  ROOT %g = f32[2,2]{1,0} custom-call(%b), custom_call_target="__cublas$gemm"',
        ]
    )
    assert hlo_counts(text) == {"hlo_gemms": 2, "hlo_fusions": 1, "hlo_ops": 3}
    ref = {"a": np.array([1.0, -2.0]), "b": np.zeros(2)}
    assert rel_grad_err(ref, ref) == 0
    assert math.isclose(rel_grad_err({"a": np.array([1.0, -1.0]), "b": np.zeros(2)}, ref), 0.5)


def test_workload_flops():
    w = WORKLOADS["mlp_b256"]
    assert w.weights == 784 * 1024 + 1024 * 1024 + 1024 * 10
    assert w.flops_per_step == 6 * 256 * w.weights
    assert w.largest_gemm == (256, 1024, 1024)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--workloads" in out and "manual_scan" in out


def test_cli_wrong_flag_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--no-such-flag"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    "argv, word",
    [
        (["--workloads", "nope"], "tutorial"),
        (["--impls", "manual,nope"], "autodiff_scan"),
        (["--dtype", "float16"], "bfloat16"),
    ],
)
def test_cli_unknown_names_exit_2_listing_valid_ones(argv, word, capsys):
    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert "nope" in err or "float16" in err
    assert word in err


def test_cli_list(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "mlp_b256" in out and "custom_vjp" in out


@pytest.mark.slow  # a whole `fnn bench` run: build, compile, time and write every result
def test_cli_runs_a_tiny_grid(tmp_path, capsys):
    argv = ["bench", "--workloads", "tiny", "--impls", "manual,autodiff", "--dtype", "float32"]
    code = main([*argv, "--repeats", "1", "--steps", "2", "--out", str(tmp_path)])
    assert code == 0
    records = json.loads((tmp_path / "results.json").read_text())
    assert {r["impl"] for r in records} == {"manual", "autodiff", "manual_aa"}  # A/A twin
    assert next(r for r in records if r["impl"] == "manual_aa")["aa_ratio"] > 0
    assert "tiny" in capsys.readouterr().out


@pytest.mark.slow
def test_sequence_workload_flops_and_a_tiny_run():
    """The transformer workload: FLOPs count the projections and the T×T attention
    products; manual and autodiff run on token ids and agree on the gradient."""
    w = WORKLOADS["transformer"]
    T, D, _, F = w.sequence
    V = w.features[-1]
    per_example = T * (D * 3 * D + 2 * D * T + D * D + 2 * D * F + D * V)
    assert w.flops_per_step == 6 * w.batch * per_example
    tiny = dataclasses.replace(w, name="tiny_transformer", batch=2, steps=1, sequence=(6, 8, 2, 16))
    records = run_workload(
        tiny,
        "float32",
        ["manual", "autodiff", "numpy", "torch"],
        repeats=2,
        square=64,
        machine=machine_info(),
        progress=lambda line: None,
    )
    assert [r["impl"] for r in records] == ["manual", "autodiff"]  # numpy, peers: MLPs only
    manual = records[0]
    assert manual["status"] == "ok" and manual["rel_grad_err"] < 1e-5
    assert manual["residual_arrays"] < records[1]["residual_arrays"]


def test_gpt_workload_counts_its_params_and_flops():
    """gpt_small: `params` equals the size of fnn.gpt's parameter tree; the FLOPs count
    every block and the tied head once."""
    w = WORKLOADS["gpt_small"]
    T, D, _, F = w.sequence
    V, L = w.features[-1], w.blocks
    assert make_problem(w, "float32").num_params == w.params
    per_example = T * (L * (D * 3 * D + 2 * D * T + D * D + 2 * D * F) + D * V)
    assert w.flops_per_step == 6 * w.batch * per_example


@pytest.mark.slow
def test_gpt_workload_runs_manual_and_autodiff_to_the_same_gradient():
    """A tiny gpt_small: manual (hand-written backward, fused head) and autodiff (jax.grad
    of the same forward) agree on the gradient; the manual backward keeps less."""
    w = WORKLOADS["gpt_small"]
    tiny = dataclasses.replace(w, name="tiny_gpt", batch=2, steps=1, sequence=(8, 8, 2, 32))
    records = run_workload(
        tiny,
        "float32",
        ["manual", "autodiff"],
        repeats=1,
        square=64,
        machine=machine_info(),
        progress=lambda line: None,
    )
    manual, autodiff = records
    assert manual["status"] == "ok" and manual["rel_grad_err"] < 1e-5
    assert manual["residual_bytes"] < autodiff["residual_bytes"]


def test_package_exports_its_names_and_imports_only_downward():
    """`fnn.bench.__all__` is the few names users call (at most 15), each existing and
    documented, and no module of the package imports from the front ends or the data
    layer (fnn.experiment, fnn.cli, fnn.data)."""
    assert len(bench.__all__) <= 15, bench.__all__
    missing = [name for name in bench.__all__ if not hasattr(bench, name)]
    assert not missing, missing
    undocumented = [name for name in bench.__all__ if not getattr(bench, name).__doc__]
    assert not undocumented, undocumented
    forbidden = ("fnn.experiment", "fnn.cli", "fnn.data")
    for path in sorted(Path(bench.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                package = "fnn.bench".split(".")
                base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                modules = [module] + [f"{module}.{alias.name}" for alias in node.names]
            else:
                continue
            bad = [m for m in modules for f in forbidden if m == f or m.startswith(f + ".")]
            assert not bad, f"{path.name}:{node.lineno} imports {bad}"


def test_impl_takes_everything_after_state_by_keyword():
    with pytest.raises(TypeError):
        Impl("flax_nnx", lambda s: s, None, "peer")
    assert Impl("flax_nnx", lambda s: s, None, kind="peer").grads is None


def test_a_record_is_typed_and_reads_and_writes_as_results_json_holds_it(records, tmp_path):
    """A timed record carries its fields in the order of the committed results files
    (the A/A twin `aa_ratio` too); the JSON round-trips to equal records; the CSV's
    columns and the documented field list come from the same fields."""
    manual = _ok(records, "manual")
    assert isinstance(manual, BenchRecord) and manual.step_ms_median == manual["step_ms_median"]
    committed = json.loads((RESULTS / "cpu-amd-epyc-2core" / "results.json").read_text())
    plain = next(r for r in committed if "aa_ratio" not in r)
    twin = next(r for r in committed if "aa_ratio" in r)
    assert list(manual) == list(plain) and "aa_ratio" not in manual
    assert list(_ok(records, "manual_aa")) == list(twin)
    assert [BenchRecord.from_dict(r).to_dict() for r in (plain, twin)] == [plain, twin]
    write_json(records, tmp_path / "results.json")  # as write_results does, without the charts
    write_csv(records, tmp_path / "results.csv")
    assert read_results(tmp_path / "results.json") == records
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded == [r.to_dict() for r in records] == [dict(r, **_lists(r)) for r in records]
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == CSV_FIELDS
    assert all(f"- `{name}`: " in field_list() for name in plain)
    assert field_list() in inspect.cleandoc(BenchRecord.__doc__)
    with pytest.raises(ValueError, match="not fields of a bench record: speed"):
        BenchRecord.from_dict({**plain, "speed": 1})


def _lists(record):
    return {k: list(v) for k, v in record.items() if isinstance(v, tuple)}


def test_a_record_that_did_not_run_carries_only_what_it_has():
    skipped = BenchRecord(workload="tiny", dtype="float32", impl="torch", status="skipped",
                          note="torch is not installed")  # fmt: skip
    assert skipped.to_dict() == {"workload": "tiny", "dtype": "float32", "impl": "torch",
                                 "status": "skipped", "note": "torch is not installed"}  # fmt: skip
    assert skipped.get("step_ms_median") is None and "step_ms_median" not in skipped


def test_names_fnn_bench_exported_before_0_2_resolve_with_a_warning():
    """The old surface stays for one release (docs/changes.md): each old name resolves to
    the object its module defines, with a DeprecationWarning saying where it lives."""
    from fnn.bench import measure

    with pytest.warns(DeprecationWarning, match=r"use fnn\.bench\.measure\.cpu_model"):
        assert bench.cpu_model is measure.cpu_model
    for name in sorted(bench._OLD_NAMES):
        with pytest.warns(DeprecationWarning):
            getattr(bench, name)
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        bench.no_such_name  # noqa: B018
