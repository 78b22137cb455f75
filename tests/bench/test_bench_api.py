"""Benchmarking your own network and layer: `fnn.bench.compare`, `compare_layer`,
`report` and `fnn bench --model/--layer` (the peers: tests/bench/test_bench.py). Tiny
shapes, one timed round, a small matmul probe: these test what is recorded and refused,
not how fast anything is (the benchmarks say that)."""

import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

import fnn
from fnn import bench
from fnn.cli import main
from fnn.core import SettingError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIELDS = (
    "workload", "impl", "dtype", "device_kind", "jax_version", "step_ms_median",
    "step_ms_iqr", "compile_s", "flops_per_s", "peak_fraction", "peak_library", "temp_bytes",
    "residual_arrays", "residual_bytes", "hlo_gemms", "hlo_ops", "rel_grad_err",
    "flops_source",
)  # fmt: skip
QUICK = dict(repeats=1, quick=True)


def _example(name):
    sys.path.insert(0, str(EXAMPLES))
    try:
        return __import__(name)
    finally:
        sys.path.pop(0)


def _mlp_batch():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 8), jnp.float32)
    return fnn.mlp([12, 3]), fnn.softmax_cross_entropy(), x, jnp.arange(16) % 3


def _by_impl(records):
    return {r["impl"]: r for r in records}


@pytest.fixture(scope="module")
def compared(small_peak_probe):
    """The built-ins and three of your own on one batch, one `compare` run: the test
    below checks it; the report tests write what manual and autodiff recorded."""
    net, loss, x, y = _mlp_batch()
    manual = fnn.value_and_grad(net, loss, "manual")

    def doubled(params, x, y):  # a wrong gradient of your own: twice the right one
        value, grads = manual(params, x, y)
        return value, jax.tree.map(lambda g: 2 * g, grads)

    return bench.compare(
        net, loss, x, y, steps=2, impls=["manual", "autodiff", "custom_vjp",
        ("mine", lambda problem: manual), ("variant", lambda problem: fnn.mlp([12, 3])),
        ("doubled", lambda problem: doubled)], **QUICK,
    )  # fmt: skip


def test_compare_times_the_built_ins_and_your_own_against_autodiff(compared):
    net = _mlp_batch()[0]
    found = _by_impl(compared)
    assert list(found) == ["manual", "autodiff", "custom_vjp", "mine", "variant", "doubled"]
    for name in ("manual", "autodiff", "custom_vjp", "mine", "variant"):
        r = found[name]
        assert r["status"] == "ok", r
        assert set(FIELDS) <= set(r), set(FIELDS) - set(r)
        assert r["workload"] == net.name and r["dtype"] == "float32"
        assert r["step_ms_median"] > 0 and r["compile_s"] > 0 and r["rel_grad_err"] < 1e-5
        assert r["flops_source"] == "XLA cost analysis" and r["flops_per_s"] > 0
    assert found["manual"]["residual_arrays"] < found["autodiff"]["residual_arrays"]
    assert found["variant"]["residual_arrays"] == found["manual"]["residual_arrays"]
    wrong = found["doubled"]
    assert wrong["status"] == "mismatch" and math.isclose(wrong["rel_grad_err"], 1.0, rel_tol=1e-5)
    assert "differs from autodiff" in wrong["note"]


def test_report_writes_the_files_and_flags_a_wrong_gradient(compared, tmp_path):
    records = [
        {**r, "status": "mismatch", "note": "gradient differs"} if r["impl"] == "manual" else r
        for r in json.loads((_fixture_records(compared, tmp_path)).read_text())
    ]
    paths = bench.report(records, tmp_path / "out")
    assert {p.name for p in paths} == {
        "results.json", "results.csv", "report.md", "time.png", "ratio.png", "peak.png",
    }  # fmt: skip
    text = (tmp_path / "out" / "report.md").read_text()
    assert "| manual ⚠ gradient mismatch |" in text and "## Gradient mismatches" in text


def _fixture_records(compared, tmp_path):
    """manual's and autodiff's records (both "ok"), as a results.json holds them."""
    path = tmp_path / "records.json"
    records = [r for r in compared if r["impl"] in ("manual", "autodiff")]
    assert [(r["impl"], r["status"]) for r in records] == [("manual", "ok"), ("autodiff", "ok")]
    path.write_text(json.dumps([r.to_dict() for r in records]))
    return path


def test_compare_layer_races_two_backwards_of_prelu_and_counts_what_each_keeps():
    example = _example("bench_your_layer")
    with jax.numpy_rank_promotion("allow"):  # user code, JAX's default broadcasting
        records = bench.compare_layer(
            example.prelu(), (16,), batch=8, calls=2,
            impls=["manual", "autodiff", "custom_vjp", ("mask", example.prelu_mask())], **QUICK,
        )  # fmt: skip
    found = _by_impl(records)
    assert all(r["status"] == "ok" and r["rel_grad_err"] < 1e-6 for r in records), records
    assert found["manual"]["residual_arrays"] == 0  # it keeps x, the argument itself
    assert found["mask"]["residual_arrays"] == 2  # 1 bit per element, and y
    assert found["mask"]["residual_bytes"] == 8 * 16 * 4 + 8 * 2  # y float32, 16 bits a row
    assert found["custom_vjp"]["residual_arrays"] == 0
    assert found["autodiff"]["residual_arrays"] >= 1
    assert records[0]["workload"] == "prelu" and records[0]["steps_per_call"] == 2


def test_bad_input_is_a_clear_error():
    net, loss, x, y = _mlp_batch()
    with pytest.raises(SettingError, match="unknown impl 'nope'; valid impls"):
        bench.compare(net, loss, x, y, impls=["manual", "nope"])
    with pytest.raises(SettingError, match=r"does not fit x \(16, 8\) and y \(16, 2\)"):
        bench.compare(net, fnn.mean_squared_error(), x, jnp.zeros((16, 2)))
    with pytest.raises(SettingError, match="batches of the same length"):
        bench.compare(net, loss, x, y[:4])
    with pytest.raises(SettingError, match="builder must return an fnn Layer or a function"):
        bench.compare(net, loss, x, y, impls={"mine": lambda problem: 3}, **QUICK)
    with pytest.raises(SettingError, match="takes an fnn Layer, got int"):
        bench.compare_layer(3, (4,), batch=2)
    with pytest.raises(SettingError, match=r"does not take inputs of shape .*\(2, 4, 4\)"):
        bench.compare_layer(fnn.conv2d(2, 3), (4, 4), batch=2)
    with pytest.raises(SettingError, match="unknown impl 'jax'"):
        bench.compare_layer(fnn.relu(), (4,), batch=2, impls=["jax"])


@pytest.mark.slow  # two timed runs from files
def test_cli_model_and_layer_from_a_file_and_its_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.py").write_text(
        "import jax, jax.numpy as jnp, fnn\n"
        "def model():\n"
        "    x = jax.random.normal(jax.random.PRNGKey(0), (8, 4))\n"
        "    return fnn.mlp([6, 2]), fnn.softmax_cross_entropy(), x, jnp.arange(8) % 2\n"
        "def layer():\n"
        "    return {'layer': fnn.tanh(), 'variants': {'again': fnn.tanh()}}\n"
        "def wrong():\n"
        "    return 3\n"
    )
    common = ["--repeats", "1", "--steps", "1", "--quick"]
    assert main(["bench", "--model", "mine.py:model", "--impls", "manual,autodiff", *common,
                 "--out", "m"]) == 0  # fmt: skip
    records = json.loads((tmp_path / "m" / "results.json").read_text())
    assert [r["impl"] for r in records] == ["manual", "autodiff", "manual_aa"]  # the A/A twin
    assert main(["bench", "--layer", "mine.py:layer", "--in-shape", "4", "--batch", "2",
                 *common, "--aa", "none", "--out", "l"]) == 0  # fmt: skip
    records = json.loads((tmp_path / "l" / "results.json").read_text())
    assert [r["impl"] for r in records] == ["manual", "autodiff", "again"]
    capsys.readouterr()
    for argv, expected in [
        (["--model", "nothere.py:model"], "there is no file nothere.py"),
        (["--model", "mine.py:nope"], "has no function 'nope'; its functions: model, layer"),
        (["--model", "mine.py:wrong"], "returned int; expected"),
        (["--model", "mine.py"], "takes FILE.py:FUNCTION"),
        (["--layer", "mine.py:layer"], "needs the input shape (set with --in-shape)"),
        (["--layer", "mine.py:layer", "--model", "mine.py:model"], "not both"),
        (["--model", "mine.py:model", "--aa", "manul"], "unknown aa impl 'manul'"),
    ]:
        assert main(["bench", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert expected in err and "Traceback" not in err, (argv, err)


@pytest.mark.slow  # draws its charts
def test_report_without_an_autodiff_reference_draws_what_it_can(compared, tmp_path):
    """`fnn bench --impls manual,torch`: no ratio to draw, the other charts still come."""
    records = [r for r in json.loads(_fixture_records(compared, tmp_path).read_text())
               if r["impl"] == "manual"]  # fmt: skip
    for r in records:
        r["ratio_vs_autodiff"] = None
    paths = bench.report(records, tmp_path / "out")
    assert "ratio.png" not in {p.name for p in paths}
    assert "time.png" in {p.name for p in paths} and all(p.exists() for p in paths)
