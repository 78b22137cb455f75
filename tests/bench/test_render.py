"""Every figure the docs quote matches its committed results file (benchmarks/render.py),
and the check catches a figure that does not: a changed quote, a changed table cell, an
unbacked new figure, a missing results file. Reads files only; nothing is measured."""

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import doc_figures  # noqa: E402
import render  # noqa: E402

GPT_PAGE = "docs/gpt.md"  # quotes the text recipe's bits per byte
SPEED = "docs/results/speed.md"  # renders the GPT race's table


def test_the_docs_match_their_results_files(capsys):
    assert render.main(["--check"]) == 0, capsys.readouterr().out
    assert "every figure matches its file" in capsys.readouterr().out


def copy_doc(tmp_path, doc):
    (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / doc, tmp_path / doc)
    return tmp_path / doc


def plant(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of `old`; return its line number."""
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


def bits_per_byte() -> str:
    """The text recipe's figure as docs/gpt.md quotes it, from its results file."""
    data = json.loads((render.RESULTS / "text_recipe.json").read_text())
    return doc_figures.f2(data["test_bits_per_byte"])


def race_row() -> tuple[str, str]:
    """The first row of the GPT race table, and the same with its time changed."""
    fragment = next(f for f in doc_figures.FRAGMENTS if f.name == "gpt-race-readme")
    row = render.render_fragment(fragment, render.Results()).splitlines()[2]
    return row, re.sub(r"\| (\d+) ms \|", lambda m: f"| {int(m[1]) + 100} ms |", row, count=1)


def test_a_changed_quoted_figure_fails_naming_document_line_quote_and_file_value(tmp_path):
    path = copy_doc(tmp_path, GPT_PAGE)
    right = bits_per_byte()
    wrong = f"{float(right) + 0.1:.2f}"
    line = plant(path, f"**{right} validation bits", f"**{wrong} validation bits")
    problems = render.check(root=tmp_path, docs=[GPT_PAGE])
    assert len(problems) == 1, problems
    text = str(problems[0])
    assert text.startswith(f"{GPT_PAGE}:{line}: ")
    assert f"'{wrong}'" in text and f"'{right}'" in text and "text_recipe.json" in text


def test_a_changed_table_cell_fails_naming_the_fragment_and_its_line(tmp_path):
    path = copy_doc(tmp_path, SPEED)
    row, wrong = race_row()
    line = plant(path, row, wrong)
    problems = render.check(root=tmp_path, docs=[SPEED])
    assert len(problems) == 1, problems
    text = str(problems[0])
    assert text.startswith(f"{SPEED}:{line}: fragment gpt-race-readme differs")
    assert render.short(wrong) in text and render.short(row) in text
    assert "gpt_race_cpu.json" in text


def test_an_unbacked_new_figure_fails(tmp_path):
    path = copy_doc(tmp_path, "docs/scaling.md")
    path.write_text(path.read_text() + "\nOn a GPU the step takes 0.42 ms, 3.1× faster.\n")
    problems = render.check(root=tmp_path, docs=["docs/scaling.md"])
    found = sorted(p.message.split("'")[1] for p in problems)
    assert found == ["0.42 ms", "3.1×"], problems


def test_render_rewrites_a_wrong_figure_and_a_second_run_changes_nothing(tmp_path):
    gpt, speed = copy_doc(tmp_path, GPT_PAGE), copy_doc(tmp_path, SPEED)
    originals = gpt.read_text(), speed.read_text()
    plant(gpt, f"**{bits_per_byte()} validation bits", "**9.99 validation bits")
    plant(speed, *race_row())
    render.run(tmp_path, render.RESULTS, [GPT_PAGE, SPEED], None, write=True)
    assert (gpt.read_text(), speed.read_text()) == originals
    render.run(tmp_path, render.RESULTS, [GPT_PAGE, SPEED], None, write=True)
    assert (gpt.read_text(), speed.read_text()) == originals
    assert render.check(root=tmp_path, docs=[GPT_PAGE, SPEED]) == []


def test_a_missing_results_file_fails_naming_it(tmp_path):
    copy_doc(tmp_path, GPT_PAGE), copy_doc(tmp_path, SPEED)
    (tmp_path / "results").mkdir()
    problems = render.check(root=tmp_path, results=tmp_path / "results", docs=[GPT_PAGE, SPEED])
    missing = " ".join(p.message for p in problems if "is missing" in p.message)
    assert "gpt_race_cpu.json is missing" in missing and "text_recipe.json is missing" in missing


# ---------------------------------------------------------------- the engine on its own


def tiny_registry(**kwargs):
    fields = {"docs": ("doc.md",), "fragments": (), "quotes": (), "allowed": ()}
    return render.Registry(**{**fields, **kwargs})


def write(tmp_path, doc_text, results=None):
    (tmp_path / "doc.md").write_text(doc_text)
    store = tmp_path / "results"
    store.mkdir()
    for name, data in (results or {}).items():
        (store / name).write_text(json.dumps(data))
    return store


def test_a_pending_fragment_renders_a_note_until_its_file_is_written(tmp_path):
    fragment = render.Fragment(
        "speed",
        ("speed.json",),
        lambda d: f"| step | {d['ms']} ms |",
        pending="python make_speed.py",
    )
    registry = tiny_registry(fragments=(fragment,))
    store = write(tmp_path, "# Speed\n\n<!-- render: speed -->\n<!-- /render -->\n")
    render.run(tmp_path, store, None, registry, write=True)
    text = (tmp_path / "doc.md").read_text()
    assert "*Not measured yet: `python make_speed.py` writes" in text
    assert render.check(tmp_path, store, None, registry) == []
    (store / "speed.json").write_text(json.dumps({"ms": 1.5}))  # the command ran
    problems = render.check(tmp_path, store, None, registry)
    assert len(problems) == 1 and "fragment speed differs" in problems[0].message
    render.run(tmp_path, store, None, registry, write=True)
    assert "| step | 1.5 ms |" in (tmp_path / "doc.md").read_text()
    assert render.check(tmp_path, store, None, registry) == []


def test_stale_registrations_and_unknown_fragments_are_reported(tmp_path):
    registry = tiny_registry(
        quotes=(render.Quote("doc.md", "the step takes {} ms", ("a.json",), lambda d: ["1"]),),
        allowed=(render.Allowed("doc.md", "a budget of 5 s", "a setting"),),
    )
    store = write(tmp_path, "<!-- render: nothing -->\n<!-- /render -->\n", {"a.json": {}})
    messages = [p.message for p in render.check(tmp_path, store, None, registry)]
    assert any("unknown fragment 'nothing'" in m for m in messages)
    assert any("registered quote not found" in m for m in messages)
    assert any("allow-list entry not found" in m for m in messages)


def test_a_quote_fills_one_word_and_multi_word_slots_across_line_breaks(tmp_path):
    quote = render.Quote(
        "doc.md",
        "took {} ms on a {*} (goal ≤ 2, {*}).",
        ("a.json",),
        lambda d: [f"{d['ms']:.1f}", d["machine"], "met"],
    )
    registry = tiny_registry(quotes=(quote,))
    store = write(
        tmp_path,
        "It took 3.0 ms on a\n2-core CPU (goal ≤ 2, not met).\n",
        {"a.json": {"ms": 1.5, "machine": "2-core AMD EPYC"}},
    )
    problems = render.check(tmp_path, store, None, registry)
    assert [p.line for p in problems] == [1, 2, 2]
    render.run(tmp_path, store, None, registry, write=True)
    assert (
        tmp_path / "doc.md"
    ).read_text() == "It took 1.5 ms on a\n2-core AMD EPYC (goal ≤ 2, met).\n"


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        ("a step of 12.5 ms and 3.1 × faster", ["12.5 ms", "3.1 ×"]),
        ("1.42–1.98 × over 7 pairs, 45% less, 2.0 MiB", ["1.42–1.98 ×", "45%", "2.0 MiB"]),
        (
            "250 000 times smaller, 111 GFLOP/s, 75 epochs/s",
            ["250 000 times", "111 GFLOP/s", "75 epochs/s"],
        ),
        ("shapes 4 × 1024, 8×8×1 and 2048³; goals ≤ 1.10 × and < 20 s", []),
        ("batch 256, 784 inputs, 1e-10, --repeats 21, jax 0.10.2, T 8192", []),
    ],
)
def test_what_looks_like_a_measurement(text, figures):
    assert [text[a:b] for (a, b), _ in render.measurements(text)] == figures


# ---------------------------------------------------------------- grid records


def record(impl, status="ok", ms=10.0, workload="mlp_b256", dtype="float32"):
    return {
        "workload": workload,
        "impl": impl,
        "dtype": dtype,
        "status": status,
        "step_ms_median": ms,
        "ratio_vs_autodiff": ms / 10.0,
        "temp_bytes": 2**20,
    }


def test_a_mismatch_shows_as_mismatch_and_never_as_fastest_or_in_a_range():
    grid = doc_figures.grid(
        [
            record("autodiff"),
            record("manual", "mismatch", ms=1.0),
            record("torch", "error"),
            record("equinox", "skipped"),
        ]
    )
    row = doc_figures.time_row(
        grid, "mlp_b256", ["manual", "autodiff", "torch", "equinox", "numpy"]
    )
    assert row == ["mismatch", "10.0 ms", "error", "–", "–"]
    assert [r["impl"] for r in grid.timed(workload="mlp_b256")] == ["autodiff"]
    with pytest.raises(ValueError, match="mlp_b256/manual/float32 is mismatch"):
        grid.value("mlp_b256", "manual", "step_ms_median")  # its time is not quoted
    assert grid.value("mlp_b256", "manual", "temp_bytes") == 2**20  # its memory is
