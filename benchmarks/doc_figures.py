"""What the docs quote, and from which results file: the registry `render.py` renders and
checks (its docstring says how). Paths of results files are relative to
benchmarks/results/; each is written by the script or command named beside it.

Grid results (`fnn bench --out DIR`: a list of records, `fnn.bench.BenchRecord` says
what each holds) are read through `grid()`: a record whose status is not "ok" shows as
its status ("mismatch", "error") or "–" (skipped), and never counts as fastest or in a
range.
"""

from __future__ import annotations

import re
import statistics

from render import ROOT, Allowed, Fragment, Quote

# README.md, every page under docs/ (at any depth) and benchmarks/README.md: a new page is
# checked as it appears
DOCS = (
    "README.md",
    *sorted(page.relative_to(ROOT).as_posix() for page in (ROOT / "docs").rglob("*.md")),
    "benchmarks/README.md",
)

MIB = 2**20

# ------------------------------------------------------------------------------- formats


def sig3(x: float) -> str:
    """Three significant figures, never in exponent form: 0.0123, 1.23, 12.3, 123, 1234."""
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def g3(x: float) -> str:
    """Three significant figures, trailing zeros dropped (4.5, 18, 139, 2089)."""
    return f"{x:.0f}" if x >= 1000 else f"{x:.3g}"


def f(digits: int):
    return lambda x: f"{x:.{digits}f}"


f0, f1, f2, f3, f5 = f(0), f(1), f(2), f(3), f(5)


def e1(x: float) -> str:
    """4.5e-14, 1.1e-5: one decimal, the exponent without a leading zero."""
    return re.sub(r"e([-+])0*(\d)", lambda m: f"e{m[1].replace('+', '')}{m[2]}", f"{x:.1e}")


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float) -> str:
    """1.4·10⁻³: two significant figures, a raised exponent."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"


def grouped(x: float, significant: int = 2) -> str:
    """250 000: rounded to `significant` figures, thousands apart by a space."""
    rounded = float(f"{x:.{significant - 1}e}")
    return f"{rounded:,.0f}".replace(",", " ")


def span(values, fmt=f2, sep="–") -> str:
    """`lo–hi` in `fmt`, or one value when both read the same."""
    lo, hi = fmt(min(values)), fmt(max(values))
    return lo if lo == hi else f"{lo}{sep}{hi}"


def pct(ratio: float) -> str:
    return f"{100 * ratio:.0f}"


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def mib(n: float) -> float:
    return n / MIB


def machine(info: dict) -> str:
    """`2-core AMD EPYC` from a results file's machine entry."""
    name = info.get("processor") or info.get("cpu_model") or info.get("cpu_model_name") or "CPU"
    name = re.sub(r"\((R|TM)\)", "", name).replace(" Processor", "")
    name = re.sub(r"\s*@\s*[\d.]+\s*GHz", "", name).strip()
    cores = info.get("cores") or info.get("cpu_cores")
    return f"{cores}-core {name}" if cores else name


# ---------------------------------------------------------------------------- grid records


# Fields that time a record: a "mismatch" record's are not quoted (it computes something
# else); its memory, residuals, HLO counts and gradient error still are.
TIMING = {
    "step_ms_median", "step_ms_iqr", "step_ms_min", "total_ms", "ratio_vs_autodiff",
    "flops_per_s", "peak_flops_per_s", "peak_fraction", "floor_ratio", "compile_s",
}  # fmt: skip


class Grid:
    """`fnn bench` records by (workload, impl, dtype)."""

    def __init__(self, records: list[dict]):
        self.records = records
        self.by = {(r["workload"], r["impl"], r["dtype"]): r for r in records}

    def get(self, workload: str, impl: str, dtype: str = "float32") -> dict | None:
        return self.by.get((workload, impl, dtype))

    def status(self, workload: str, impl: str, dtype: str = "float32") -> str:
        r = self.get(workload, impl, dtype)
        return "absent" if r is None else str(r.get("status"))

    def ok(self, workload: str, impl: str, dtype: str = "float32") -> dict:
        """The record, which must have run and matched; else a clear error."""
        status = self.status(workload, impl, dtype)
        if status != "ok":
            raise ValueError(f"{workload}/{impl}/{dtype} is {status}, not ok")
        return self.get(workload, impl, dtype)

    def value(self, workload, impl, key, dtype="float32"):
        """One field of a record: a timing field only from an "ok" record, any other field
        from an "ok" or a "mismatch" one."""
        status = self.status(workload, impl, dtype)
        if status == "mismatch" and key not in TIMING:
            return self.get(workload, impl, dtype)[key]
        return self.ok(workload, impl, dtype)[key]

    def timed(self, **where) -> list[dict]:
        """The "ok" records matching `where` (a mismatch or an error never counts)."""
        return [
            r
            for r in self.records
            if r.get("status") == "ok" and all(r.get(k) == v for k, v in where.items())
        ]

    def cell(self, workload, impl, fmt, dtype="float32", key="step_ms_median") -> str:
        """A table cell: the value, or what happened instead of a time."""
        r = self.get(workload, impl, dtype)
        if r is None or r.get("status") == "skipped":
            return "–"
        if r.get("status") != "ok":
            return str(r.get("status"))  # "mismatch", "error": never a time
        return fmt(r[key])


def grid(records) -> Grid:
    return Grid(records)


def step_unit(values_ms) -> str:
    return "µs" if min(values_ms) < 1 else "ms"


def time_fmt(unit: str):
    """A step time in `unit`: 217 µs, 97.0 µs; 36.3 ms, 484 ms, 5.63 ms."""
    if unit == "µs":
        return lambda ms: f"{sig3(ms * 1e3)} µs"
    return lambda ms: f"{sig3(ms)} ms"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(line.replace("|  |", "| |") for line in lines)


def time_row(g: Grid, workload: str, impls: list[str], dtype="float32") -> list[str]:
    """Step times of `impls` on one workload, in one unit for the row."""
    times = [r["step_ms_median"] for r in g.timed(workload=workload, dtype=dtype)] or [1.0]
    fmt = time_fmt(step_unit(times))
    return [g.cell(workload, impl, fmt, dtype) for impl in impls]


# ============================================ the site's pages: docs/*.md, docs/results/*.md

TRACK = "track_gradients.json"  # python benchmarks/track_gradients.py


def track_gradients(d):
    return [
        machine(d["machine"]),
        str(d["reps"]),
        f2(d["fit_s_median"]["tracked"]),
        f2(d["fit_s_median"]["plain"]),
        pct(d["fit_ratio_median"] - 1),
    ]


def summary_block(text: str) -> str:
    """`fnn summary`'s table in a code block, its title line and rules left out."""
    lines = [line for line in text.splitlines()[2:] if line.strip() and set(line.strip()) != {"-"}]
    return "```\n" + "\n".join(lines) + "\n```"


TUTORIAL = "tutorial_figures.json"  # python benchmarks/tutorial_figures.py


def plateau(run) -> str:
    lo, hi = f5(run["loss_min"]), f5(run["loss_max"])
    return lo if lo == hi else f"{lo}–{hi}"


# fnn check --json benchmarks/results/check_float64.json; the same with --dtype float32
CHECK64, CHECK32 = "check_float64.json", "check_float32.json"


def all_pass(records) -> str:
    failed = [r["name"] for r in records if not r["passed"]]
    if failed:
        raise ValueError(f"items fail: {', '.join(failed)}")
    return str(len(records))


def worst(records) -> dict:
    return max(records, key=lambda r: r["max_rel_err"])


def median_err(records) -> str:
    return e1(statistics.median(r["max_rel_err"] for r in records))


def fd_counts(records):
    ran = [r for r in records if not str(r.get("finite_differences")).startswith("skipped")]
    failed = [r["name"] for r in ran if r.get("finite_differences") != "passed"]
    if failed:
        raise ValueError(f"finite differences fail: {', '.join(failed)}")
    return [str(len(ran)), str(len(records))]


CNN = "cnn_seeds.json"  # python benchmarks/cnn_seeds.py


def cnn(d, variant):
    return d["variants"][variant]


SKLEARN = "sklearn_compare.json"  # python benchmarks/sklearn_compare.py
RECIPE_NOTES = {  # words the recipe column adds to what the config says
    "breast_cancer": ("sigmoid", "sigmoid (the tutorial's shape)"),
    "diabetes": ("tanh,", "tanh, MSE,"),
}


def lr_text(lr: float) -> str:
    return re.sub(r"e-0*(\d)", r"e-\1", f"{lr:.0e}")


def sklearn_table(d) -> str:
    rows = []
    for name, s in d["summary"].items():
        runs = [r for r in d["runs"] if r["dataset"] == name]
        c = runs[0]["config"]
        recipe = (
            f"{'-'.join(map(str, c['hidden']))} {c['activation']}, {c['optimizer']} "
            f"{lr_text(c['lr'])}, batch {c['batch_size']}, {c['epochs']} epochs"
        )
        if name in RECIPE_NOTES:
            recipe = recipe.replace(*RECIPE_NOTES[name], 1)
        metric = "R²" if s["metric"] == "r2" else s["metric"]
        rows.append(
            [
                f"{name} ({metric})",
                recipe,
                f3(s["fnn_mean"]),
                " / ".join(f3(r["fnn"]["score"]) for r in runs),
                f3(s["sklearn_mean"]),
                f"{f1(s['fnn_wall_s_median'])} s",
            ]
        )
    header = [
        "data set",
        "recipe (`fnn train --list-datasets`)",
        "fnn",
        "per seed",
        "scikit-learn MLP",
        "fnn run, compile included",
    ]
    return table(header, rows)


def misclassified(accuracy: float, n: int = 30) -> str:
    return f"{round((1 - accuracy) * n)}"


FIT = "fit_overhead.json"  # python benchmarks/fit_overhead.py
TEXT = "text_recipe.json"  # python benchmarks/text_recipe.py
RACE = "gpt_race_cpu.json"  # PYTHONPATH=. python benchmarks/gpt_race.py
RACE_ROWS = {  # gpt_race.py's row: its label in docs/results/speed.md
    "manual": "fnn, hand-written (recompute gelu)",
    "manual_b128": "fnn, hand-written, attention in blocks of 128",
    "manual_rc_all": "fnn, hand-written, recompute all",
    "autodiff": "jax.grad",
    "autodiff_remat": "jax.grad, `jax.checkpoint` per block",
    "torch_eager": "PyTorch eager",
    "torch_compile": "torch.compile",
    "equinox": "Equinox",
    "flax_nnx": "Flax NNX",
}


def temp_mib(row) -> str:
    return "–" if row.get("temp_bytes") is None else f"{mib(row['temp_bytes']):.0f} MiB"


def race_table_short(d) -> str:
    rows = []
    for impl, label in RACE_ROWS.items():
        r = d["rows"].get(impl)
        if r is None:
            continue
        rows.append(
            [
                label,
                f"{1e3 * r['median_step_s']:.0f} ms",
                f2(r["ratio_vs_autodiff_paired"]),
                f"{r['tokens_per_s']:,.0f}",
                temp_mib(r),
            ]
        )
    header = ["implementation", "median step", "× jax.grad (paired)", "tokens/s", "compiled temp"]
    return table(header, rows)


def load_range(d) -> str:
    return span(d["load_average_1min_per_round"], f1)


# fnn bench --out DIR: the peers on an Intel Xeon (not rerun), the AMD EPYC grids
XEON = "cpu-intel-xeon-2core/results.json"
AMD = "cpu-amd-epyc-2core/results.json"
AMD_CNN = "cpu-amd-epyc-2core-cnn/results.json"
AMD_TRANSFORMER = "cpu-amd-epyc-2core-transformer/results.json"
BIG = ("mlp_b256", "mlp_b4096", "deep_relu", "deep_sigmoid")
XEON_ROWS = {
    "tutorial": "tutorial 100→5→4→1, per step",
    "mlp_b256": "MLP 784-1024-1024-10, batch 256",
    "mlp_b4096": "same, batch 4096",
    "deep_relu": "4 × 1024 relu, batch 512",
    "deep_sigmoid": "4 × 1024 sigmoid, batch 512",
}
XEON_IMPLS = {
    "manual": "fnn manual",
    "autodiff": "jax.grad",
    "flax_nnx": "Flax NNX",
    "equinox": "Equinox",
    "torch": "PyTorch eager",
    "torch_compile": "torch.compile",
    "numpy": "numpy",
}


def xeon_peers(records) -> str:
    g = grid(records)
    rows = [[label, *time_row(g, w, list(XEON_IMPLS))] for w, label in XEON_ROWS.items()]
    return table(["workload", *XEON_IMPLS.values()], rows)


def xeon_peak_range(records) -> str:
    g = grid(records)
    return span([r["peak_flops_per_s"] / 1e9 for r in g.timed(dtype="float32")], f0)


def iqr_max(records) -> str:
    g = grid(records)
    return pct(max(r["step_ms_iqr"] / r["step_ms_median"] for r in g.timed()))


def shorter(records) -> str:
    """How much shorter PyTorch's steps (eager and compiled) are than fnn's manual one."""
    g = grid(records)
    shares = [
        1 - g.value(w, impl, "step_ms_median") / g.value(w, "manual", "step_ms_median")
        for w in BIG
        for impl in ("torch", "torch_compile")
    ]
    return span(shares, pct)


def peak_shares(records, impls) -> str:
    g = grid(records)
    return span([g.value(w, i, "peak_fraction") for w in BIG for i in impls], pct)


def temp_pair(g: Grid, workload: str) -> list[str]:
    fmt = lambda b: f"{mib(b):.2f}" if mib(b) < 20 else f"{mib(b):.1f}"  # noqa: E731
    return [fmt(g.value(workload, impl, "temp_bytes")) for impl in ("manual", "autodiff")]


PER_EXAMPLE = "cpu-amd-epyc-2core-per-example/results.json"
PER_EXAMPLE_COMMAND = (
    "fnn bench --workloads per_example --impls autodiff,per_example,per_example_vmap "
    "--out benchmarks/results/cpu-amd-epyc-2core-per-example"
)


def per_example(records) -> str:
    g = grid(records)
    manual, vmapped = g.ok("per_example", "per_example"), g.ok("per_example", "per_example_vmap")
    out_mb = manual["output_bytes"] / 1e6
    return (
        f"On a {machine(manual)} (digits MLP 64-256-128-10, batch {manual['batch']}, `fnn "
        f"bench --workloads per_example`, {manual['repeats']} alternated rounds) the\n"
        f"hand-written per-example gradients take {sig3(manual['step_ms_median'])} ms against "
        f"{sig3(vmapped['step_ms_median'])} ms for `vmap(grad)`\n"
        f"({f2(manual['ratio_vs_autodiff'])} × in the same rounds), with "
        f"{sig3(mib(manual['temp_bytes']))} against {sig3(mib(vmapped['temp_bytes']))} MiB of "
        f"compiled temp memory;\nboth write {out_mb:.0f} MB of gradients "
        f"(`benchmarks/results/cpu-amd-epyc-2core-per-example/`)."
    )


PAGE_FRAGMENTS = [
    Fragment("summary-digits", ("summary_digits.txt",), summary_block),  # fnn summary > FILE
    Fragment("sklearn-compare", (SKLEARN,), sklearn_table),
    Fragment("gpt-race-readme", (RACE,), race_table_short),
    Fragment("xeon-peers", (XEON,), xeon_peers),
    Fragment("per-example", (PER_EXAMPLE,), per_example, pending=PER_EXAMPLE_COMMAND),
]

# The documentation site's pages that quote figures (README.md itself quotes none)
TUTORIAL_PAGE = "docs/tutorial.md"
SEEING = "docs/seeing-the-backward.md"
TRAINING_PAGE = "docs/training.md"
YOUR_LAYER = "docs/your-layer.md"
BENCHMARKING = "docs/benchmarking.md"
GETTING_STARTED = "docs/getting-started.md"
GPT_PAGE = "docs/gpt.md"
CHECKER_RESULTS = "docs/results/checker.md"
TRAINING_RESULTS = "docs/results/training.md"
SPEED_RESULTS = "docs/results/speed.md"
PAGE_QUOTES = [
    Quote(
        SEEING,
        "Its cost on the digits recipe ({*}, `python benchmarks/track_gradients.py`, {} "
        "alternated pairs in one process): {} s against {} s for the 30 epochs with their "
        "evaluations, {}%.",
        (TRACK,),
        track_gradients,
    ),
    # why the tutorial's loss is flat (benchmarks/tutorial_figures.py)
    Quote(
        TUTORIAL_PAGE,
        "reproduces it: {} at iteration 0, {} at 10 000",
        (TUTORIAL,),
        lambda d: [
            f5(d["runs"]["random_targets"]["loss_first"]),
            f5(d["runs"]["random_targets"]["loss_last"]),
        ],
    ),
    Quote(
        TUTORIAL_PAGE,
        "whose loss is {}, where the tutorial's sits",
        (TUTORIAL,),
        lambda d: [f5(d["floors"]["predict_the_mean"])],
    ),
    Quote(
        TUTORIAL_PAGE,
        "below their mean entropy, {}.",
        (TUTORIAL,),
        lambda d: [f3(d["floors"]["predict_each_exactly"])],
    ),
    Quote(
        TUTORIAL_PAGE,
        "so the RMS of dZ3 is {} and that of dZ1 {}, {*} times smaller",
        (TUTORIAL,),
        lambda d: (
            lambda rms: [sci(rms["dZ3"]), sci(rms["dZ1"]), grouped(rms["dZ3"] / rms["dZ1"])]
        )(d["runs"]["random_targets"]["rms_at_iteration_0"]),
    ),
    Quote(
        TUTORIAL_PAGE,
        "the tutorial's initialisation still sits at {} for 10 000",
        (TUTORIAL,),
        lambda d: [plateau(d["runs"]["learnable_tutorial_init"])],
    ),
    Quote(
        TUTORIAL_PAGE,
        "bring the loss from {} to {} (their dZ1 starts {*} times larger)",
        (TUTORIAL,),
        lambda d: [
            f3(d["runs"]["learnable_glorot_normal"]["loss_first"]),
            f"{d['runs']['learnable_glorot_normal']['loss_last']:.2g}",
            grouped(
                d["runs"]["learnable_glorot_normal"]["rms_at_iteration_0"]["dZ1"]
                / d["runs"]["learnable_tutorial_init"]["rms_at_iteration_0"]["dZ1"]
            ),
        ],
    ),
    # the checker, measured (fnn check --json)
    Quote(
        CHECKER_RESULTS,
        "all {} items pass; in float64 the largest relative error is {} (`{}`), the "
        "median {}, and the finite-difference check passes on every item that runs it "
        "({} of {}); in float32 the largest is {}, the median {}.",
        (CHECK64, CHECK32),
        lambda a, b: [
            all_pass(a) if all_pass(b) else "",
            e1(worst(a)["max_rel_err"]),
            worst(a)["name"],
            median_err(a),
            *fd_counts(a),
            e1(worst(b)["max_rel_err"]),
            median_err(b),
        ],
    ),
    # the cnn recipe (benchmarks/cnn_seeds.py)
    Quote(
        TRAINING_RESULTS,
        "cnn` reaches {} test accuracy ({} over `--seed",
        (CNN,),
        lambda d: [
            f3(cnn(d, "cnn")["test_accuracy"]["0"]),
            span(cnn(d, "cnn")["test_accuracy"].values(), f3),
        ],
    ),
    Quote(
        TRAINING_RESULTS,
        "`--schedule cosine --epochs 40 --batch-size 16` {}.",
        (CNN,),
        lambda d: [f3(cnn(d, "cnn_cosine")["test_accuracy"]["0"])],
    ),
    Quote(
        TRAINING_RESULTS,
        "gives {} over the same seeds (mean {} against {}).",
        (CNN,),
        lambda d: [
            span(cnn(d, "cnn_batch_norm")["test_accuracy"].values(), f3),
            f3(cnn(d, "cnn_batch_norm")["mean"]),
            f3(cnn(d, "cnn")["mean"]),
        ],
    ),
    # scikit-learn and fit's overhead
    Quote(
        TRAINING_RESULTS,
        "fnn misclassifies {}, scikit-learn {}.",
        (SKLEARN,),
        lambda d: [
            misclassified(d["summary"]["iris"]["fnn_seed0"]),
            misclassified(d["summary"]["iris"]["sklearn_seed0"]),
        ],
    ),
    Quote(
        TRAINING_RESULTS,
        "`fit` costs {} × a bare `lax.scan`",
        (FIT,),
        lambda d: [f2(d["fit_over_bare"])],
    ),
    Quote(
        TRAINING_RESULTS,
        "runs at {} epochs/s with the hand-written backward and {} epochs/s with "
        "`jax.grad` ({*}, `benchmarks/fit_overhead.py`)",
        (FIT,),
        lambda d: [
            f0(d["epochs_per_s"]["manual"]),
            f0(d["epochs_per_s"]["autodiff"]),
            machine(d["machine"]),
        ],
    ),
    # the text recipe (benchmarks/text_recipe.py)
    Quote(GPT_PAGE, "GPT of {} parameters", (TEXT,), lambda d: [f"{d['num_params']:,}"]),
    Quote(
        GPT_PAGE,
        "reached **{} validation bits per byte**",
        (TEXT,),
        lambda d: [f2(d["test_bits_per_byte"])],
    ),
    Quote(
        GPT_PAGE,
        "the whole `fnn train` taking {} minutes on a {*}; after one epoch it stood at {}.",
        (TEXT,),
        lambda d: [
            f1(d["train_command_s"] / 60),
            machine(d["machine"]),
            f2(d["history"]["test_bits_per_byte"][0]),
        ],
    ),
    # the GPT race (benchmarks/gpt_race.py)
    Quote(
        SPEED_RESULTS,
        "(jax {}, torch {}; {} rounds, 1-minute load average {}; "
        "`benchmarks/results/gpt_race_cpu.json`)",
        (RACE,),
        lambda d: [
            d["versions"]["jax"],
            d["versions"]["torch"].split("+")[0],
            str(d["flags"]["rounds"]),
            load_range(d),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "the hand-written step is {} × jax.grad's (goal ≤ 1.0, {*}; its A/A twin's paired "
        "ratio to it {}, {} over the rounds) in {} × its compiled temp memory (goal ≤ 0.5, "
        "{*});",
        (RACE,),
        lambda d: [
            f2(d["goals"]["step_le_1.0x_autodiff"]["value"]),
            met(d["goals"]["step_le_1.0x_autodiff"]["pass"]),
            f2(d["aa"]["paired_ratio_median"]),
            f"{f2(d['aa']['paired_ratio_min'])}–{f2(d['aa']['paired_ratio_max'])}",
            f2(d["goals"]["temp_le_0.5x_autodiff"]["value"]),
            met(d["goals"]["temp_le_0.5x_autodiff"]["pass"]),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "keeps less ({} MiB) and runs at {} ×",
        (RACE,),
        lambda d: [
            f"{mib(d['rows']['autodiff_remat']['temp_bytes']):.0f}",
            f2(d["rows"]["autodiff_remat"]["ratio_vs_autodiff_paired"]),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "its step takes {} × the hand-written one's (goal: fnn's tokens/s ≥ PyTorch eager's, {*})",
        (RACE,),
        lambda d: [
            f2(d["goals"]["tokens_ge_torch_eager"]["value"]),
            met(d["goals"]["tokens_ge_torch_eager"]["pass"]),
        ],
    ),
    # the peers on the Intel Xeon (fnn bench, not rerun) and two AMD EPYC grid figures
    Quote(
        SPEED_RESULTS,
        "its best GEMM {} GFLOP/s, IQRs up to {}%)",
        (XEON,),
        lambda r: [xeon_peak_range(r), iqr_max(r)],
    ),
    Quote(
        SPEED_RESULTS,
        "in one fused `lax.scan` takes {} µs a step",
        (XEON,),
        lambda r: [sig3(1e3 * grid(r).value("tutorial", "manual_scan", "step_ms_median"))],
    ),
    Quote(
        SPEED_RESULTS,
        "PyTorch's step is {}% shorter on the larger nets: its steps ran at {}% of the "
        "machine's best measured matmul rate, fnn's and jax.grad's at {}%",
        (XEON,),
        lambda r: [
            shorter(r),
            peak_shares(r, ("torch", "torch_compile")),
            peak_shares(r, ("manual", "autodiff")),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "Equinox's row is {} × jax.grad on the larger nets and {} × on the tutorial",
        (XEON,),
        lambda r: [
            span([grid(r).value(w, "equinox", "ratio_vs_autodiff") for w in BIG], f2),
            f1(grid(r).value("tutorial", "equinox", "ratio_vs_autodiff")),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "jax.grad {} / {} MiB (batch 256), {} / {} MiB (batch 4096), {} / {} MiB (deep relu)",
        (XEON,),
        lambda r: [
            *temp_pair(grid(r), "mlp_b256"),
            *temp_pair(grid(r), "mlp_b4096"),
            *temp_pair(grid(r), "deep_relu"),
        ],
    ),
    Quote(
        SPEED_RESULTS,
        "the same step ran at {} × the FLOP floor",
        (AMD,),
        lambda r: [f2(grid(r).value("mlp_b256", "manual", "floor_ratio"))],
    ),
    Quote(
        SPEED_RESULTS,
        "the hand-written step took {} × jax.grad's time",
        (AMD_TRANSFORMER,),
        lambda r: [f2(grid(r).value("transformer", "manual", "ratio_vs_autodiff"))],
    ),
]

PAGE_ALLOWED = [
    Allowed(TRAINING_PAGE, "(5.2 s on cpu)", "an example of what `fnn train` prints, not a claim"),
    Allowed(
        BENCHMARKING,
        "`fnn bench --quick` runs in about 1.5 min on a 2-core CPU "
        "(3 min with the peers installed)",
        "a command's approximate run time, guidance",
    ),
    Allowed(
        GETTING_STARTED, "the fast tier, for your loop: under 90 s", "the fast tier's time budget"
    ),
    Allowed(
        GETTING_STARTED,
        "everything (what CI runs): about 4 min",
        "a command's approximate run time",
    ),
    Allowed(YOUR_LAYER, "max(max|ref|, 1% of the largest leaf's", "the checker's floor, a setting"),
]

# =========================================================================== docs/scaling.md

PARALLEL = "parallel_overhead.json"  # python benchmarks/parallel_overhead.py
PARALLEL_ROWS = {  # parallel_overhead.py's case: (section, the table's label)
    "digits_mlp_b128": ("steps", "digits MLP 64-256-128-10, batch 128"),
    "mlp_784_1024x2_b256": ("steps", "MLP 784-1024-1024-10, batch 256"),
    "digits_fit_b32": ("epochs", "digits `fit` epoch, batch 32 (44 steps)"),
}


def parallel_table(d) -> str:
    rows = []
    for case, (section, label) in PARALLEL_ROWS.items():
        c = d[section][case]
        times = c["ms_per_step"] if section == "steps" else c["ms_per_epoch"]
        rows.append(
            [
                label,
                f"{sig3(times['plain'])} ms",
                f"{sig3(times['mesh1'])} ms ({f2(c['mesh1_over_plain'])}×)",
                f"{sig3(times['mesh8'])} ms ({f1(c['mesh8_over_plain'])}×)",
            ]
        )
    return table(["", "plain step", "1-device mesh", f"{d['devices']} forced devices"], rows)


def mesh8_range(d) -> str:
    ratios = [d[s][c]["mesh8_over_plain"] for c, (s, _) in PARALLEL_ROWS.items()]
    return span(ratios, f1)


S = "docs/scaling.md"
SCALING_FRAGMENTS = [Fragment("parallel-overhead", (PARALLEL,), parallel_table)]
SCALING_QUOTES = [
    Quote(
        S,
        "(1-minute load average ≈ {} during the run)",
        (PARALLEL,),
        lambda d: [f0(d["machine"]["load_average_1min_after"])],
    ),
    Quote(
        S,
        "Eight forced devices on two cores are {}× slower",
        (PARALLEL,),
        lambda d: [mesh8_range(d)],
    ),
]
SCALING_ALLOWED = [
    Allowed(S, 'within 3 s" after 3 s', "the tests' coordinator timeout, a setting"),
    Allowed(S, "(default 60 s)", "a flag's default"),
    Allowed(S, "timed out after 40 s", "XLA's rendezvous timeout, a setting of XLA"),
    Allowed(S, "cost at most 1.02× the plain step", "the issue's goal"),
]

# ====================================================================== benchmarks/README.md

B = "benchmarks/README.md"

# --- the peers on the Intel Xeon (fnn bench; measured with the old rotation, not rerun)

XEON_STEP_IMPLS = {
    "manual": "manual",
    "autodiff": "autodiff",
    "manual_scan": "manual_scan",
    "custom_vjp": "custom_vjp",
    "numpy": "numpy",
    "equinox": "Equinox",
    "flax_nnx": "Flax NNX",
    "torch": "PyTorch",
    "torch_compile": "torch.compile",
}
XEON_STEP_ROWS = {
    "tutorial": "tutorial, per step",
    **{w: w for w in ("mlp_b256", "mlp_b4096", "deep_relu", "deep_sigmoid")},
}
FLOOR_IMPLS = {
    "manual": "fnn manual",
    "autodiff": "jax.grad",
    "torch": "PyTorch eager",
    "torch_compile": "torch.compile",
}


def xeon_steps(records) -> str:
    g = grid(records)
    rows = [[label, *time_row(g, w, list(XEON_STEP_IMPLS))] for w, label in XEON_STEP_ROWS.items()]
    return table(["workload", *XEON_STEP_IMPLS.values()], rows)


def xeon_floor(records) -> str:
    g = grid(records)
    rows = [
        [w, *(g.cell(w, impl, lambda x: f"{f2(x)} ×", key="floor_ratio") for impl in FLOOR_IMPLS)]
        for w in BIG
    ]
    return table(["`floor_ratio`", *FLOOR_IMPLS.values()], rows)


XLA_LABELS = {"default": "default", "onednn custom calls": "oneDNN with its custom calls"}


def xla_flags_table(d) -> str:
    rows = {}
    for r in d["rows"]:
        label = XLA_LABELS.get(r["setting"], f"`{r['xla_flags']}`")
        cells = rows.setdefault(label, {})
        if r.get("errors"):
            cells[r["workload"]] = ["error", "error"]
        else:
            cells[r["workload"]] = [f1(r["manual_ms_median"]), f3(r["manual_over_torch_median"])]
    body = [
        [label, *c.get("deep_relu", ["–"] * 2), *c.get("mlp_b256", ["–"] * 2)]
        for label, c in rows.items()
    ]
    header = [
        "setting",
        "deep_relu manual, ms",
        "manual / PyTorch",
        "mlp_b256 manual, ms",
        "manual / PyTorch",
    ]
    return table(header, body)


EQX = "equinox_fairness.json"  # python benchmarks/equinox_fairness.py
EQX_LABELS = {
    "eqx vmap+filter_jit": "`vmap(Linear)`, `eqx.filter_jit` (the grid's row)",
    "eqx batched+filter_jit": "batched `x @ W.T + b`, `eqx.filter_jit`",
    "eqx vmap+jax.jit": "`vmap(Linear)`, `eqx.partition` + `jax.jit`",
    "jax.grad": "plain `jax.grad`, `jax.jit`",
}


def equinox_table(d) -> str:
    rows = [
        [
            EQX_LABELS.get(name, name),
            f"{f1(r['step_ms_median'])} ms",
            f"{f1(r['step_ms_min'])} ms",
            f2(r["vs_jax_grad"]),
            f2(r["min_vs_jax_grad"]),
        ]
        for name, r in d["forms"].items()
    ]
    header = [
        "form",
        "median step",
        "best round",
        "× jax.grad (median of per-round ratios)",
        "× (best rounds)",
    ]
    return table(header, rows)


def filter_jit_cost(d) -> str:
    forms = d["forms"]
    return pct(
        forms["eqx vmap+filter_jit"]["vs_jax_grad"] / forms["eqx vmap+jax.jit"]["vs_jax_grad"] - 1
    )


PEERS = {
    "equinox": "Equinox",
    "flax_nnx": "Flax NNX",
    "torch": "PyTorch",
    "torch_compile": "torch.compile",
}
NETS = ("mlp_b256", "deep_relu", "deep_sigmoid")


def xeon_goals(xeon, amd) -> str:
    g, a = grid(xeon), grid(amd)
    step = lambda w, i: g.value(w, i, "step_ms_median")  # noqa: E731
    faster = [
        label
        for impl, label in PEERS.items()
        if any(step(w, impl) < step(w, "manual") for w in NETS)
    ]
    flax = ", ".join(f"{sig3(step(w, 'manual'))} vs {sig3(step(w, 'flax_nnx'))}" for w in NETS)
    torch = span([1 - step(w, "torch") / step(w, "manual") for w in NETS], pct)
    compiled = span([1 - step(w, "torch_compile") / step(w, "manual") for w in NETS], pct)
    slower_eqx = all(step(w, "manual") <= step(w, "equinox") for w in NETS)
    measured = (
        f"{'≤ Equinox on all' if slower_eqx else 'Equinox faster on some'}; fnn against Flax "
        f"NNX {flax} ms; PyTorch {torch}% shorter, torch.compile {compiled}%"
    )
    floors = [g.value(w, "manual", "floor_ratio") for w in BIG]
    torch_floors = [g.value(w, "torch", "floor_ratio") for w in BIG]
    amd_floor = a.value("mlp_b256", "manual", "floor_ratio")
    rows = [
        [
            "fnn manual ≤ every peer on mlp_b256 and the deep nets",
            measured,
            "met" if not faster else f"not met against {', '.join(faster)}",
        ],
        [
            "fnn manual ≤ 1.10 × the machine's FLOP floor",
            f"{span(floors, f2)} × (PyTorch {span(torch_floors, f2)} ×)",
            ("met" if max(floors) <= 1.10 else "not met on this machine's day")
            + f" ({f2(amd_floor)} × on the AMD EPYC below)",
        ],
    ]
    return table(["goal", "measured", "status"], rows)


# --- the AMD EPYC grid (fnn bench; to be rerun with the fixed rotation: all rendered)

AMD_BASE = {
    "manual": "manual",
    "autodiff": "autodiff",
    "manual_scan": "manual_scan",
    "autodiff_scan": "autodiff_scan",
    "custom_vjp": "custom_vjp",
    "numpy": "numpy",
}
AMD_ROWS = {
    ("tutorial", "float64"): "tutorial 100→5→4→1, 200 samples, float64, per step",
    ("tutorial", "float32"): "tutorial, float32, per step",
    ("mlp_b256", "float32"): "mlp_b256: 784-1024-1024-10, batch 256",
    ("mlp_b4096", "float32"): "mlp_b4096: same net, batch 4096",
    ("deep_sigmoid", "float32"): "deep_sigmoid: 4 × 1024, batch 512",
    ("deep_tanh", "float32"): "deep_tanh",
    ("deep_relu", "float32"): "deep_relu",
}
DEEP = ("deep_sigmoid", "deep_tanh", "deep_relu")


def impl_columns(g: Grid, base: dict) -> dict:
    """`base`, then every peer that ran (ok or mismatch) in this grid."""
    ran = {r["impl"] for r in g.records if r.get("status") in ("ok", "mismatch")}
    return {**base, **{impl: label for impl, label in PEERS.items() if impl in ran}}


def amd_steps(records) -> str:
    g = grid(records)
    impls = impl_columns(g, AMD_BASE)
    rows = [[label, *time_row(g, w, list(impls), dt)] for (w, dt), label in AMD_ROWS.items()]
    return table(["workload (float32 unless said)", *impls.values()], rows)


def ratio_cell(g: Grid, workload: str, impl: str, dtype="float32") -> str:
    return g.cell(workload, impl, f3, dtype, key="ratio_vs_autodiff")


def amd_ratios(records) -> str:
    g = grid(records)
    impls = [
        i for i in impl_columns(g, AMD_BASE) if i not in ("autodiff", "autodiff_scan", "numpy")
    ]
    groups = {
        "tutorial float64 / float32": [("tutorial", "float64"), ("tutorial", "float32")],
        "mlp_b256": [("mlp_b256", "float32")],
        "mlp_b4096": [("mlp_b4096", "float32")],
        "deep_sigmoid / tanh / relu": [(w, "float32") for w in DEEP],
    }
    rows = [
        [label, *(" / ".join(ratio_cell(g, w, i, dt) for w, dt in cases) for i in impls)]
        for label, cases in groups.items()
    ]
    return table(["workload", *impls], rows)


def resid(r: dict) -> str:
    return f"{r['residual_arrays']} ({sig3(mib(r['residual_bytes']))})"


def amd_memory(records) -> str:
    g = grid(records)
    rows = []
    for w in ("mlp_b256", "mlp_b4096", *DEEP):
        m, a = g.get(w, "manual", "float32"), g.get(w, "autodiff", "float32")
        if not (m and a and m.get("temp_bytes") and a.get("temp_bytes")):
            rows.append([w, *["–"] * 5])
            continue
        flagged = [i for i, r in (("manual", m), ("autodiff", a)) if r.get("status") == "mismatch"]
        rows.append(
            [
                w + "".join(f" ({i}: mismatch)" for i in flagged),
                f"{mib(m['temp_bytes']):.2f} MiB",
                f"{mib(a['temp_bytes']):.2f} MiB",
                f2(m["temp_bytes"] / a["temp_bytes"]),
                resid(m),
                resid(a),
            ]
        )
    header = [
        "workload",
        "temp, manual",
        "temp, autodiff",
        "manual / autodiff",
        "residual arrays (MiB), manual",
        "autodiff",
    ]
    return table(header, rows)


def amd_peaks(records, dtype) -> list[float]:
    g = grid(records)
    return [
        r["peak_flops_per_s"] / 1e9
        for r in g.timed(dtype=dtype)
        if r.get("peak_flops_per_s") and r.get("peak_shape") == "2048x2048x2048"
    ]


def temp(g: Grid, w: str, impl: str) -> float:
    return mib(g.value(w, impl, "temp_bytes"))


def amd_goals(records) -> str:
    g = grid(records)
    r256 = g.value("mlp_b256", "manual", "ratio_vs_autodiff")
    ok4096 = g.status("mlp_b4096", "manual") == "ok"
    r4096 = g.value("mlp_b4096", "manual", "ratio_vs_autodiff") if ok4096 else None
    at4096 = f3(r4096) if ok4096 else g.status("mlp_b4096", "manual")
    points = [r for r in g.timed() if r["impl"] in ("manual", "manual_scan")]
    top = max(points, key=lambda r: r["ratio_vs_autodiff"])
    others = sorted(
        {r["workload"] for r in points if r["ratio_vs_autodiff"] > 1.03} - {top["workload"]}
    )
    lower = {
        w: 1 - temp(g, w, "manual") / temp(g, w, "autodiff")
        for w in ("mlp_b256", "mlp_b4096", *DEEP)
    }
    deep_words = [
        f"{w.split('_')[1]} −{pct(lower[w])}%"
        if lower[w] > 0.005
        else f"{w.split('_')[1]} equal ({temp(g, w, 'manual'):.2f} MiB)"
        for w in DEEP
    ]
    deep_met = [w.split("_")[1] for w in DEEP if lower[w] > 0.005]
    floor_m = g.value("mlp_b256", "manual", "floor_ratio")
    floor_a = g.value("mlp_b256", "autodiff", "floor_ratio")
    scans = [
        1e3 * g.value("tutorial", i, "step_ms_median", "float64")
        for i in ("manual_scan", "autodiff_scan")
    ]
    numpy = 1e3 * g.value("tutorial", "numpy", "step_ms_median", "float64")
    rows = [
        [
            "mlp_b256 manual/autodiff ≤ 1.00",
            f"{f3(r256)} (grid); {at4096} at batch 4096",
            met(r256 <= 1.0)
            + ("" if r256 <= 1.0 or not ok4096 else f"; {met(r4096 <= 1.0)} at 4096"),
        ],
        [
            "no grid point above 1.03",
            f"max {f3(top['ratio_vs_autodiff'])} ({top['workload']} {top['dtype']}, {top['impl']})"
            + (f"; also above: {', '.join(others)}" if others else ""),
            met(top["ratio_vs_autodiff"] <= 1.03),
        ],
        [
            "manual temp memory ≤ autodiff's",
            "lower by "
            + ", ".join(f"{pct(v)}% ({w})" for w, v in lower.items() if v > 0.005)
            + "; equal elsewhere",
            met(min(lower.values()) >= -0.005),
        ],
        [
            "lower on deep sigmoid, tanh, relu",
            "; ".join(deep_words),
            "met"
            if len(deep_met) == 3
            else (f"met for {' and '.join(deep_met)} only" if deep_met else "not met"),
        ],
        [
            "mlp_b256 step ≤ 1.10 × FLOP floor",
            f"{f2(floor_m)} × manual, {f2(floor_a)} × autodiff (against the measured 2048³ peak)",
            met(floor_m <= 1.10),
        ],
        [
            "tutorial ≥ 5 × faster than numpy in-process",
            f"fused scan {span(scans, f0)} µs vs numpy {f0(numpy)} µs, float64 "
            f"({span([numpy / s for s in scans], f1)} ×)",
            met(numpy / max(scans) >= 5),
        ],
    ]
    return table(["goal", "measured (2-core AMD EPYC, jax 0.10.2)", "status"], rows)


RELU = "relu_mask.json"  # RELU_COMMAND
RELU_COMMAND = "PYTHONPATH=. python benchmarks/relu_mask.py --repeats 21"
RELU_LABELS = {
    "relu_bitmask": "fnn's relu (1-bit mask)",
    "relu_output": "relu keeping its output",
    "autodiff": "autodiff",
}


def relu_table(d) -> str:
    rows = []
    for rec in d["records"]:
        for impl, label in RELU_LABELS.items():
            r = rec["impls"][impl]
            rows.append(
                [
                    f"{rec['workload']} ({rec['repeats']} rounds of "
                    f"{rec['steps_per_round']} steps)",
                    label,
                    f"{mib(r['temp_bytes']):.2f}",
                    sig3(r["step_ms_median"]),
                    f3(r["ratio_vs_autodiff"]),
                ]
            )
    return table(["workload", "relu", "temp MiB", "step ms", "× autodiff (per round)"], rows)


def cnn_ratio(r: dict) -> str:
    x = r["ratio_vs_autodiff"]
    if r["impl"] in ("autodiff", "autodiff_scan"):
        return "1"
    text = f"{x:.2g}" if x < 0.1 else f2(x)
    return f"**{text}**" if x < 0.5 else text


def amd_cnn(records) -> str:
    g = grid(records)
    rows = []
    for w in ("cnn_digits", "cnn_mnist"):
        for impl in ("manual", "autodiff", "manual_scan", "autodiff_scan"):
            r = g.get(w, impl)
            if r is None or r.get("status") != "ok":
                rows.append([w, impl, g.cell(w, impl, str), *["–"] * 4])
                continue
            rows.append(
                [
                    w,
                    impl,
                    sig3(r["step_ms_median"]),
                    cnn_ratio(r),
                    f2(mib(r["temp_bytes"])),
                    resid(r),
                    str(r["hlo_convs"]),
                ]
            )
    header = ["workload", "impl", "ms/step", "vs autodiff", "temp MiB", "residuals (MiB)", "convs"]
    return table(header, rows)


CNN_TRAIN = ("cnn-train/manual/metrics.json", "cnn-train/autodiff/metrics.json")
CNN_TRAIN_COMMAND = (
    "fnn train --model cnn --out benchmarks/results/cnn-train/manual; "
    "fnn train --model cnn --grad autodiff --out benchmarks/results/cnn-train/autodiff"
)


def cnn_train(manual, autodiff) -> str:
    return (
        f"{f1(manual['wall_s'])} s with the hand-written backward against "
        f"{f1(autodiff['wall_s'])} s with `--grad autodiff`, at test accuracy "
        f"{manual['test_accuracy']:.4f} and {autodiff['test_accuracy']:.4f}\n"
        "(`results/cnn-train/manual/`, `results/cnn-train/autodiff/`)."
    )


TRANSFORMER_IMPLS = ("manual", "autodiff", "manual_scan", "autodiff_scan", "custom_vjp")


def amd_transformer(records) -> str:
    g = grid(records)
    rows = []
    for impl in TRANSFORMER_IMPLS:
        r = g.get("transformer", impl)
        if r is None or r.get("status") != "ok":
            rows.append([impl, g.cell("transformer", impl, str), *["–"] * 6])
            continue
        ratio = r["ratio_vs_autodiff"]
        rows.append(
            [
                impl,
                f2(r["step_ms_median"]),
                "1"
                if impl in ("autodiff", "autodiff_scan")
                else (f"**{f3(ratio)}**" if ratio <= 0.9 else f3(ratio)),
                f1(100 * r["peak_fraction"]),
                f2(mib(r["temp_bytes"])),
                resid(r),
                str(r["hlo_fusions"]),
                "0" if not r["rel_grad_err"] else e1(r["rel_grad_err"]),
            ]
        )
    header = [
        "impl",
        "ms/step",
        "vs autodiff",
        "% peak",
        "temp MiB",
        "residuals (MiB)",
        "fusions",
        "err",
    ]
    return table(header, rows)


PARTS = "layer_parts.json"  # PYTHONPATH=. python benchmarks/layer_parts.py
PART_LABELS = {
    "attention_causal": "multi_head_attention(4, causal)",
    "attention": "multi_head_attention(4)",
    "layer_norm": "layer_norm",
    "ffn_dense_gelu_dense": "dense(512), gelu, dense(128)",
    "dense_3d_input": "dense(128) on (16, 64, 128)",
    "gelu": "gelu",
    "batch_norm_train": "batch_norm, training",
    "dropout_train": "dropout(0.1), training",
    "dense_batch_norm_relu": "dense(128), batch_norm, relu",
}


def mib_cell(x: float) -> str:
    return "0" if x == 0 else f2(x)


def parts_table(d) -> str:
    rows = [
        [
            PART_LABELS.get(r["part"], r["part"]),
            f2(r["manual_ms"]),
            f2(r["autodiff_ms"]),
            f"**{f3(r['ratio'])}**" if r["ratio"] <= 0.8 else f3(r["ratio"]),
            f"{mib_cell(r['manual_temp_mib'])} / {mib_cell(r['autodiff_temp_mib'])}",
        ]
        for r in d["records"]
    ]
    return table(["part", "manual ms", "autodiff ms", "ratio", "temp MiB, manual / autodiff"], rows)


def part(d, name) -> dict:
    return next(r for r in d["records"] if r["part"] == name)


SEQUENCE_PARTS = ("dense_3d_input", "ffn_dense_gelu_dense", "dense_batch_norm_relu")
ALONE_PARTS = ("layer_norm", "gelu", "batch_norm_train", "dropout_train")

# --- the GPT (benchmarks/attention_memory.py, lm_head_memory.py, gpt_race.py, ...)

ATTENTION = "attention_memory_cpu.json"  # PYTHONPATH=. python benchmarks/attention_memory.py
ATT_TEMP = ("dense_manual", "dense_vjp", "blockwise_manual", "blockwise_ckpt_vjp")
ATT_STEP = (
    "dense_manual",
    "dense_vjp",
    "blockwise_manual",
    "blockwise_manual_aa",
    "blockwise_ckpt_vjp",
)


def att(d, impl, T) -> dict:
    return next(r for r in d["records"] if r["impl"] == impl and r["T"] == T)


def attention_table(d) -> str:
    Ts = sorted({r["T"] for r in d["records"]})
    rows = []
    for T in Ts:
        by = {r["impl"]: r for r in d["records"] if r["T"] == T}
        temps = [g3(mib(by[i]["temp_bytes"])) if i in by else "–" for i in ATT_TEMP]
        steps = [
            g3(1e3 * by[i]["median_s"]) if by.get(i, {}).get("median_s") else "–" for i in ATT_STEP
        ]
        rows.append([str(T), *temps, *steps])
    header = [
        "T",
        "temp: dense manual",
        "dense vjp",
        "blockwise manual",
        "blockwise ckpt-vjp",
        "step: dense manual",
        "dense vjp",
        "blockwise manual",
        "blockwise A/A",
        "blockwise ckpt-vjp",
    ]
    return table(header, rows)


def goal(d, prefix) -> dict:
    return next(v for k, v in d["goals"].items() if k.startswith(prefix))


LM = "lm_head_memory_cpu.json"  # benchmarks/lm_head_memory.py --chunk 256 --budget-s 60
LM_LABELS = {
    "fused_1024": "fused, chunk 1024",
    "fused_1024_again": "fused, chunk 1024, A/A",
    "fused_256": "fused, chunk {chunk}",
    "unfused_manual": "unfused, by hand",
    "unfused_autodiff": "unfused, jax.grad",
}


def kept(n: int) -> str:
    return f"{g3(n / 1024)} KiB" if n < MIB else f"{g3(mib(n))} MiB"


def lm(d, vocab, impl) -> dict:
    res = next(r for r in d["results"] if r["vocab"] == vocab)
    return next(r for r in res["records"] if r["impl"] == impl)


def lm_table(d) -> str:
    vocabs = [r["vocab"] for r in d["results"]]
    rows = []
    for impl, label in LM_LABELS.items():
        cells = [label.format(chunk=d["settings"]["chunk"])]
        for v in vocabs:
            r = lm(d, v, impl)
            cells += [
                g3(mib(r["temp_bytes"])),
                kept(r["residual_bytes"]),
                g3(r["median_ms"]),
                f2(r["ratio"]),
            ]
        cells.append(" / ".join(f"{lm(d, v, impl)['rel_grad_err']:.1e}" for v in vocabs))
        rows.append(cells)
    header = ["implementation"]
    for v in vocabs:
        header += [f"V {v}: temp MiB", "kept", "median ms", "× jax.grad"]
    header.append(f"rel. grad err (V {' / '.join(map(str, vocabs))})")
    return table(header, rows)


RACE_FULL = {
    "manual": "manual",
    "manual_again": "manual, A/A",
    "manual_b64": "manual_b64",
    "manual_b128": "manual_b128",
    "manual_rc_none": "manual_rc_none",
    "manual_rc_all": "manual_rc_all",
    "autodiff": "jax.grad",
    "autodiff_remat": "jax.grad + checkpoint per block",
    "torch_eager": "PyTorch eager",
    "torch_compile": "torch.compile",
    "equinox": "Equinox",
    "flax_nnx": "Flax NNX",
}


def race_table(d) -> str:
    rows = []
    for impl, label in RACE_FULL.items():
        r = d["rows"].get(impl)
        if r is None:
            continue
        temp_ = "–" if r.get("temp_bytes") is None else f"{mib(r['temp_bytes']):.0f}"
        rows.append(
            [
                label,
                f0(1e3 * r["median_step_s"]),
                f0(1e3 * r["iqr_s"]),
                f0(1e3 * r["best_step_s"]),
                f3(r["ratio_vs_autodiff_paired"]),
                f0(r["tokens_per_s"]),
                f1(r["pct_of_peak"]),
                temp_,
            ]
        )
    header = [
        "impl",
        "median step ms",
        "IQR ms",
        "best round ms",
        "× jax.grad (median per round)",
        "tokens/s",
        "% peak",
        "temp MiB",
    ]
    return table(header, rows)


def race_goals(d) -> str:
    goals, rows_ = d["goals"], d["rows"]
    step, temp_, tokens = (
        goals["step_le_1.0x_autodiff"],
        goals["temp_le_0.5x_autodiff"],
        goals["tokens_ge_torch_eager"],
    )
    per_round = tokens["paired_per_round"]
    token_status = (
        "met"
        if tokens["pass"]
        else "**not met**"
        + (": PyTorch eager is faster in every round" if max(per_round) < 1 else "")
    )
    rows = [
        [
            "manual step ≤ 1.0 × jax.grad's",
            f"{f3(step['value'])} (per round); {f3(step['ratio_of_medians'])} (ratio of medians)",
            met(step["pass"]),
        ],
        [
            "compiled temp ≤ 0.5 × jax.grad's",
            f"{mib(rows_['manual']['temp_bytes']):.0f} vs "
            f"{mib(rows_['autodiff']['temp_bytes']):.0f} MiB: {f3(temp_['value'])} ×",
            met(temp_["pass"]),
        ],
        [
            "tokens/s ≥ PyTorch eager's",
            f"{f2(tokens['value'])} ×; per round {', '.join(f2(x) for x in per_round)}",
            token_status,
        ],
    ]
    return table(["goal", "measured (`goals` in the JSON)", "status"], rows)


SWEEP = "gpt_memory_sweep_cpu.json"  # PYTHONPATH=. python benchmarks/gpt_race.py --sweep
SWEEP_IMPLS = ("manual_b128_all", "manual_dense_gelu", "autodiff", "autodiff_remat")


def sweep_table(d) -> str:
    Ts = sorted({r["T"] for r in d["rows"]})
    rows = []
    for T in Ts:
        by = {r["impl"]: r for r in d["rows"] if r["T"] == T}
        temps = [g3(mib(by[i]["temp_bytes"])) if i in by else "–" for i in SWEEP_IMPLS]
        steps = [
            g3(1e3 * by[i]["median_step_s"]) if by.get(i, {}).get("median_step_s") else "–"
            for i in SWEEP_IMPLS
        ]
        rows.append([str(T), *temps, *steps])
    header = [
        "T",
        "temp: manual, blocks 128, recompute all",
        "manual, dense, recompute gelu",
        "jax.grad",
        "jax.grad + checkpoint",
        "step: manual b128 all",
        "manual dense gelu",
        "jax.grad",
        "jax.grad + checkpoint",
    ]
    return table(header, rows)


def sweep_rounds(d) -> str:
    return str(max(len(r.get("step_s_per_round") or []) for r in d["rows"]))


GENERATE = "generate_speed.json"  # python benchmarks/generate_speed.py

BENCH_FRAGMENTS = [
    Fragment("xeon-steps", (XEON,), xeon_steps),
    Fragment("xeon-floor", (XEON,), xeon_floor),
    Fragment("xla-flags", ("xla_flags.json",), xla_flags_table),  # benchmarks/xla_flags.py
    Fragment("equinox-fairness", (EQX,), equinox_table),
    Fragment("xeon-goals", (XEON, AMD), xeon_goals),
    Fragment("amd-steps", (AMD,), amd_steps),
    Fragment("amd-ratios", (AMD,), amd_ratios),
    Fragment("amd-memory", (AMD,), amd_memory),
    Fragment("relu-mask", (RELU,), relu_table, pending=RELU_COMMAND),
    Fragment("amd-goals", (AMD,), amd_goals),
    Fragment("amd-cnn", (AMD_CNN,), amd_cnn),
    Fragment("cnn-train", CNN_TRAIN, cnn_train, pending=CNN_TRAIN_COMMAND),
    Fragment("amd-transformer", (AMD_TRANSFORMER,), amd_transformer),
    Fragment("layer-parts", (PARTS,), parts_table),
    Fragment("attention-memory", (ATTENTION,), attention_table),
    Fragment("lm-head", (LM,), lm_table),
    Fragment("gpt-race", (RACE,), race_table),
    Fragment("gpt-race-goals", (RACE,), race_goals),
    Fragment("gpt-sweep", (SWEEP,), sweep_table),
]


BENCH_QUOTES = [
    # Intel Xeon
    Quote(
        B,
        "run was {} GFLOP/s, and the IQRs in `report.md` reach {}% of the medians",
        (XEON,),
        lambda r: [xeon_peak_range(r), iqr_max(r)],
    ),
    Quote(
        B,
        "(at most {} on every workload but mlp_b4096, below)",
        (XEON,),
        lambda r: [
            e1(max(x["rel_grad_err"] for x in grid(r).timed() if x["workload"] != "mlp_b4096"))
        ],
    ),
    Quote(
        B,
        "**mlp_b4096's {}.** Every implementation, numpy and PyTorch included, differs "
        "from jax.grad by {} (relative",
        (XEON,),
        lambda r: [e1(grid(r).value("mlp_b4096", "manual", "rel_grad_err"))] * 2,
    ),
    Quote(
        B,
        "PyTorch's steps reached {}% of the peak, fnn's and jax.grad's {}%",
        (XEON,),
        lambda r: [
            peak_shares(r, ("torch", "torch_compile")),
            peak_shares(r, ("manual", "autodiff")),
        ],
    ),
    Quote(
        B,
        "the yardstick ({} rounds, medians;",
        ("xla_flags.json",),
        lambda d: [str(d["rows"][0]["processes"])],
    ),
    Quote(B, "written four ways, alternated in {} rounds", (EQX,), lambda d: [str(d["rounds"])]),
    Quote(
        B,
        "cost nothing measurable ({} × under a plain `jax.jit`)",
        (EQX,),
        lambda d: [f2(d["forms"]["eqx vmap+jax.jit"]["vs_jax_grad"])],
    ),
    Quote(
        B, "about {}% on this step (the `vmap(Linear)` form", (EQX,), lambda d: [filter_jit_cost(d)]
    ),
    Quote(
        B,
        "most of the tutorial row's {} × (a 534-parameter net",
        (XEON,),
        lambda r: [f1(grid(r).value("tutorial", "equinox", "ratio_vs_autodiff"))],
    ),
    Quote(
        B,
        "its {} × on mlp_b256 is that cost plus the grid run's noise (Equinox's IQR there "
        "was {} ms on {} ms)",
        (XEON,),
        lambda r: [
            f2(grid(r).value("mlp_b256", "equinox", "ratio_vs_autodiff")),
            f1(grid(r).value("mlp_b256", "equinox", "step_ms_iqr")),
            f1(grid(r).value("mlp_b256", "equinox", "step_ms_median")),
        ],
    ),
    Quote(
        B,
        "the digits recipe, {} alternated pairs in one process): 30 epochs with their "
        "evaluations {} s tracked against {} s plain ({} ×); median epoch {} against {} ms.",
        (TRACK,),
        lambda d: [
            str(d["reps"]),
            f2(d["fit_s_median"]["tracked"]),
            f2(d["fit_s_median"]["plain"]),
            f2(d["fit_ratio_median"]),
            f1(d["epoch_ms_median"]["tracked"]),
            f1(d["epoch_ms_median"]["plain"]),
        ],
    ),
    # AMD EPYC grid
    Quote(
        B,
        "(`fnn bench --repeats {}`, the order-fair",
        (AMD,),
        lambda r: [str(grid(r).timed()[0]["repeats"])],
    ),
    Quote(
        B,
        "`per_example`, `cnn_digits` and `transformer` spread {*}, so a ratio",
        (AMD,),
        lambda r: [
            span(
                [
                    abs(x["aa_ratio"] - 1)
                    for x in r
                    if x.get("aa_ratio")
                    and x["workload"] in ("tutorial", "per_example", "cnn_digits", "transformer")
                ],
                pct,
            )
            + " %"
        ],
    ),
    Quote(
        B,
        "(best round of a 2048³ square): {} GFLOP/s float32, {} GFLOP/s float64. On "
        "mlp_b256 the step reaches {}% of that figure",
        (AMD,),
        lambda r: [
            span(amd_peaks(r, "float32"), f0),
            span(amd_peaks(r, "float64"), f1),
            pct(grid(r).value("mlp_b256", "manual", "peak_fraction")),
        ],
    ),
    Quote(
        B,
        "), i.e. {} × the FLOP floor.",
        (AMD,),
        lambda r: [f2(grid(r).value("mlp_b256", "manual", "floor_ratio"))],
    ),
    Quote(
        B,
        "relu costs {} × sigmoid's temp memory under autodiff ({} vs {} MiB on deep_*)",
        (AMD,),
        lambda r: [
            f1(temp(grid(r), "deep_relu", "autodiff") / temp(grid(r), "deep_sigmoid", "autodiff")),
            f2(temp(grid(r), "deep_relu", "autodiff")),
            f2(temp(grid(r), "deep_sigmoid", "autodiff")),
        ],
    ),
    Quote(
        B,
        "Temp memory falls to {} MiB on deep_relu (−{}%), {} vs {} MiB on mlp_b4096.",
        (AMD,),
        lambda r: [
            f2(temp(grid(r), "deep_relu", "manual")),
            pct(1 - temp(grid(r), "deep_relu", "manual") / temp(grid(r), "deep_relu", "autodiff")),
            f1(temp(grid(r), "mlp_b4096", "manual")),
            f1(temp(grid(r), "mlp_b4096", "autodiff")),
        ],
    ),
    Quote(
        B,
        "manual keeps about half.** {} arrays for mlp_b256 (the hidden outputs, their relu "
        "bit masks and the log-probabilities, {} MiB) against autodiff's {} ({} MiB)",
        (AMD,),
        lambda r: [
            str(grid(r).value("mlp_b256", "manual", "residual_arrays")),
            f2(mib(grid(r).value("mlp_b256", "manual", "residual_bytes"))),
            str(grid(r).value("mlp_b256", "autodiff", "residual_arrays")),
            f2(mib(grid(r).value("mlp_b256", "autodiff", "residual_bytes"))),
        ],
    ),
    Quote(
        B,
        "per-step time ~{} × (dispatch costs more",
        (AMD,),
        lambda r: [
            f0(
                grid(r).value("tutorial", "manual", "step_ms_median")
                / grid(r).value("tutorial", "manual_scan", "step_ms_median")
            )
        ],
    ),
    Quote(
        B,
        "({} vs {} MiB on mlp_b256, {} MiB on deep_*)",
        (AMD,),
        lambda r: [
            f2(temp(grid(r), "mlp_b256", "manual_scan")),
            f2(temp(grid(r), "mlp_b256", "manual")),
            span([temp(grid(r), w, i) for w in DEEP for i in ("manual_scan", "autodiff_scan")], f0),
        ],
    ),
    Quote(
        B,
        "A 534-parameter step is ~{} MFLOP",
        (AMD,),
        lambda r: [
            f1(
                grid(r).value("tutorial", "manual", "flops_per_s")
                * grid(r).value("tutorial", "manual", "step_ms_median")
                / 1e9
            )
        ],
    ),
    Quote(
        B,
        "which is what the {} µs per step are.",
        (AMD,),
        lambda r: [
            span(
                [
                    1e3 * x["step_ms_median"]
                    for x in grid(r).timed(workload="tutorial")
                    if x["impl"] in ("manual_scan", "autodiff_scan")
                ],
                f0,
            )
        ],
    ),
    Quote(
        B,
        "against numpy is not reached here ({} ×).",
        (AMD,),
        lambda r: [
            span(
                [
                    grid(r).value("tutorial", "numpy", "step_ms_median", "float64")
                    / grid(r).value("tutorial", i, "step_ms_median", "float64")
                    for i in ("manual_scan", "autodiff_scan")
                ],
                f1,
            )
        ],
    ),
    Quote(
        B,
        "(OpenBLAS; {} × autodiff's step)",
        (AMD,),
        lambda r: [
            span(
                [
                    x["ratio_vs_autodiff"]
                    for x in grid(r).timed(impl="numpy", dtype="float32")
                    if x["workload"] in ("mlp_b256", "mlp_b4096", *DEEP)
                ],
                f2,
            )
        ],
    ),
    Quote(
        B,
        "**Gradient agreement**: ≤ {} relative in float32 and {} in float64 everywhere, "
        "except mlp_b4096 float32 ({} in the first",
        (AMD,),
        lambda r: [
            e1(
                max(
                    x["rel_grad_err"]
                    for x in grid(r).timed(dtype="float32")
                    if x["workload"] != "mlp_b4096"
                )
            ),
            e1(max(x["rel_grad_err"] for x in grid(r).timed(dtype="float64"))),
            e1(grid(r).value("mlp_b4096", "manual", "rel_grad_err")),
        ],
    ),
    # conv nets
    Quote(
        B,
        "on the same 2-core AMD EPYC, float32, {} alternated rounds. `cnn_digits`",
        (AMD_CNN,),
        lambda r: [str(grid(r).timed()[0]["repeats"])],
    ),
    Quote(
        B,
        "slow generic path: {} vs {} ms per step on cnn_digits, {} s vs {} s on cnn_mnist",
        (AMD_CNN,),
        lambda r: [
            sig3(grid(r).value("cnn_digits", "autodiff_scan", "step_ms_median")),
            sig3(grid(r).value("cnn_digits", "autodiff", "step_ms_median")),
            f"{grid(r).value('cnn_mnist', 'autodiff_scan', 'step_ms_median') / 1e3:.2g}",
            f"{grid(r).value('cnn_mnist', 'autodiff', 'step_ms_median') / 1e3:.2g}",
        ],
    ),
    Quote(
        B,
        "**{} × faster than autodiff in the scan**",
        (AMD_CNN,),
        lambda r: [
            f0(
                1
                / max(
                    grid(r).value(w, "manual_scan", "ratio_vs_autodiff")
                    for w in ("cnn_digits", "cnn_mnist")
                )
            )
        ],
    ),
    Quote(
        B,
        "**Dispatched**: {} on cnn_digits, {} on cnn_mnist:",
        (AMD_CNN,),
        lambda r: [
            f2(grid(r).value("cnn_digits", "manual", "ratio_vs_autodiff")),
            f2(grid(r).value("cnn_mnist", "manual", "ratio_vs_autodiff")),
        ],
    ),
    Quote(
        B,
        "**Memory: manual wins by {}%.** Temp memory {} vs {} MiB (cnn_digits), {} vs {} "
        "MiB (cnn_mnist); residuals {} arrays vs {} and half the bytes ({} vs {} MiB)",
        (AMD_CNN,),
        lambda r: (
            lambda g: [
                span(
                    [
                        1 - temp(g, w, "manual") / temp(g, w, "autodiff")
                        for w in ("cnn_digits", "cnn_mnist")
                    ],
                    pct,
                ),
                f2(temp(g, "cnn_digits", "manual")),
                f2(temp(g, "cnn_digits", "autodiff")),
                f1(temp(g, "cnn_mnist", "manual")),
                f1(temp(g, "cnn_mnist", "autodiff")),
                str(g.value("cnn_mnist", "manual", "residual_arrays")),
                str(g.value("cnn_mnist", "autodiff", "residual_arrays")),
                f1(mib(g.value("cnn_mnist", "manual", "residual_bytes"))),
                f1(mib(g.value("cnn_mnist", "autodiff", "residual_bytes"))),
            ]
        )(grid(r)),
    ),
    Quote(
        B,
        "**Gradient agreement**: {} relative in float32; exact ({}) in the float64 checker.",
        (AMD_CNN, CHECK64),
        lambda r, c: [
            span(
                [
                    x["rel_grad_err"]
                    for x in grid(r).timed()
                    if x["impl"] not in ("autodiff", "autodiff_scan")
                ],
                e1,
            ),
            f1(max(x["max_rel_err"] for x in c if x["name"].startswith("conv"))),
        ],
    ),
    # the transformer block and its parts
    Quote(
        B,
        "`fnn bench --workloads transformer --repeats {}` on",
        (AMD_TRANSFORMER,),
        lambda r: [str(grid(r).timed()[0]["repeats"])],
    ),
    Quote(
        B,
        "Both modes run the same {} GEMMs.",
        (AMD_TRANSFORMER,),
        lambda r: [
            str(grid(r).value("transformer", "manual", "hlo_gemms"))
            if grid(r).value("transformer", "manual", "hlo_gemms")
            == grid(r).value("transformer", "autodiff", "hlo_gemms")
            else "different"
        ],
    ),
    Quote(
        B,
        "activations, {} alternated rounds, training mode",
        (PARTS,),
        lambda d: [str(d["shape"]["rounds"])],
    ),
    Quote(
        B,
        "**Dense on a sequence: manual wins by {}%.**",
        (PARTS,),
        lambda d: [span([1 - part(d, p)["ratio"] for p in SEQUENCE_PARTS], pct)],
    ),
    Quote(
        B,
        "hence {}; gelu itself is close ({}). On this block alone the manual temp memory "
        "is higher, {} vs {} MiB (one {} MiB buffer more",
        (PARTS,),
        lambda d: [
            f2(part(d, "ffn_dense_gelu_dense")["ratio"]),
            f2(part(d, "gelu")["ratio"]),
            f2(part(d, "ffn_dense_gelu_dense")["manual_temp_mib"]),
            f2(part(d, "ffn_dense_gelu_dense")["autodiff_temp_mib"]),
            f1(
                part(d, "ffn_dense_gelu_dense")["manual_temp_mib"]
                - part(d, "ffn_dense_gelu_dense")["autodiff_temp_mib"]
            ),
        ],
    ),
    Quote(
        B,
        "the whole block uses {}% less with the manual",
        (AMD_TRANSFORMER,),
        lambda r: [
            pct(
                1
                - temp(grid(r), "transformer", "manual") / temp(grid(r), "transformer", "autodiff")
            )
        ],
    ),
    Quote(
        B,
        "**Attention: manual {}% faster and {}% less temp memory.**",
        (PARTS,),
        lambda d: [
            span([1 - part(d, p)["ratio"] for p in ("attention_causal", "attention")], pct),
            span(
                [
                    1 - part(d, p)["manual_temp_mib"] / part(d, p)["autodiff_temp_mib"]
                    for p in ("attention_causal", "attention")
                ],
                pct,
            ),
        ],
    ),
    Quote(
        B,
        "({} residual arrays for the whole block against {}, {} vs {} MiB)",
        (AMD_TRANSFORMER,),
        lambda r: (
            lambda g: [
                str(g.value("transformer", "autodiff", "residual_arrays")),
                str(g.value("transformer", "manual", "residual_arrays")),
                f1(mib(g.value("transformer", "autodiff", "residual_bytes"))),
                f1(mib(g.value("transformer", "manual", "residual_bytes"))),
            ]
        )(grid(r)),
    ),
    Quote(
        B,
        "alone: ties** ({} on calls of {} ms)",
        (PARTS,),
        lambda d: [
            span([part(d, p)["ratio"] for p in ALONE_PARTS], f2),
            span([part(d, p)["manual_ms"] for p in ALONE_PARTS], f1),
        ],
    ),
    Quote(
        B,
        "batch_norm, relu` is {} with {}% less temp memory",
        (PARTS,),
        lambda d: [
            f3(part(d, "dense_batch_norm_relu")["ratio"]),
            pct(
                1
                - part(d, "dense_batch_norm_relu")["manual_temp_mib"]
                / part(d, "dense_batch_norm_relu")["autodiff_temp_mib"]
            ),
        ],
    ),
    Quote(
        B,
        "(above), and {} MiB, exactly one (16, 64, 128) float32 array, fewer",
        (PARTS,),
        lambda d: [
            f1(
                part(d, "dense_batch_norm_relu")["autodiff_temp_mib"]
                - part(d, "dense_batch_norm_relu")["manual_temp_mib"]
            )
        ],
    ),
    Quote(
        B,
        "**Gradient agreement**: {} relative in float32 (the float64 checker: {} on",
        (AMD_TRANSFORMER, CHECK64),
        lambda r, c: [
            e1(grid(r).value("transformer", "manual", "rel_grad_err")),
            e1(next(x["max_rel_err"] for x in c if x["name"] == "transformer_block")),
        ],
    ),
    # the GPT
    Quote(
        B,
        "benchmarks/attention_memory.py` ({} rounds).",
        (ATTENTION,),
        lambda d: [str(d["setup"]["rounds"])],
    ),
    Quote(
        B,
        "the dense layer, {} vs {} MiB ({} ×), **{*}**; blockwise step ≤ 1.5 × the "
        "checkpointed vjp's, {} vs {} ms ({} ×), **{*}**; at T 256, no slower than the dense "
        "layer, {} vs {} ms ({} ×), **{*}** (the A/A twin: {} ms:",
        (ATTENTION,),
        lambda d: [
            g3(mib(att(d, "blockwise_manual", 8192)["temp_bytes"])),
            g3(mib(att(d, "dense_vjp", 8192)["temp_bytes"])),
            f"{goal(d, 'blockwise_manual temp_bytes')['ratio']:.2g}",
            met(goal(d, "blockwise_manual temp_bytes")["met"]),
            g3(1e3 * att(d, "blockwise_manual", 8192)["median_s"]),
            g3(1e3 * att(d, "blockwise_ckpt_vjp", 8192)["median_s"]),
            f2(goal(d, "blockwise_manual median_s ≤ 1.5")["ratio"]),
            met(goal(d, "blockwise_manual median_s ≤ 1.5")["met"]),
            g3(1e3 * att(d, "blockwise_manual", 256)["median_s"]),
            g3(1e3 * att(d, "dense_manual", 256)["median_s"]),
            f2(goal(d, "blockwise_manual median_s ≤ 1 ")["ratio"]),
            met(goal(d, "blockwise_manual median_s ≤ 1 ")["met"]),
            g3(1e3 * att(d, "blockwise_manual_aa", 256)["median_s"]),
        ],
    ),
    Quote(
        B,
        "(1-minute load average {} before, {} after: the",
        (ATTENTION,),
        lambda d: [f1(d["load_average"]["before"][0]), f1(d["load_average"]["after"][0])],
    ),
    Quote(
        B,
        "Kept between the passes at T 8192: blockwise {} MiB; dense {} MiB by hand, {} MiB "
        "under jax.vjp.",
        (ATTENTION,),
        lambda d: [
            g3(mib(att(d, i, 8192)["residual_bytes"]))
            for i in ("blockwise_manual", "dense_manual", "dense_vjp")
        ],
    ),
    Quote(
        B,
        "near the dense layer's ({} MiB)",
        (ATTENTION,),
        lambda d: [g3(mib(att(d, "blockwise_ckpt_vjp", 8192)["temp_bytes"]))],
    ),
    Quote(
        B,
        "Rounds: {} at V 256, {} at V 50 257",
        (LM,),
        lambda d: [str(r["rounds"]) for r in d["results"]],
    ),
    Quote(
        B,
        "level with jax.grad of the unfused one ({} ×, its A/A twin {} ×)",
        (LM,),
        lambda d: [
            f2(lm(d, 50257, "fused_1024")["ratio"]),
            f2(lm(d, 50257, "fused_1024_again")["ratio"]),
        ],
    ),
    Quote(
        B,
        "without its {} MiB of kept",
        (LM,),
        lambda d: [g3(mib(lm(d, 50257, "unfused_autodiff")["residual_bytes"]))],
    ),
    Quote(
        B,
        "its fourth matmul shows ({} ×)",
        (LM,),
        lambda d: [f2(lm(d, 256, "fused_1024")["ratio"])],
    ),
    Quote(
        B,
        "timed in the same rounds ({} GFLOP/s)",
        (RACE,),
        lambda d: [f0(d["peak"]["flops_per_s"] / 1e9)],
    ),
    Quote(
        B,
        "A/A (`aa`): per-round ratio median {}, range {}, medians {} × apart",
        (RACE,),
        lambda d: [
            f3(d["aa"]["paired_ratio_median"]),
            f"{f2(d['aa']['paired_ratio_min'])}–{f2(d['aa']['paired_ratio_max'])}",
            f2(d["aa"]["ratio_of_medians"]),
        ],
    ),
    Quote(
        B,
        "race itself (1-minute load average {} over the rounds)",
        (RACE,),
        lambda d: [load_range(d)],
    ),
    Quote(
        B,
        "vocab 256, batch 1; {} rounds; timed where a step is predicted under {} s)",
        (SWEEP,),
        lambda d: [sweep_rounds(d), f"{d['flags']['max_step_s']:g}"],
    ),
    Quote(
        B,
        "On the {*}, batch {}, {} tokens, {} rounds: the cache {} ms a token, the window {} "
        "ms: the cache is **{} ×** faster (first calls, compile included: {} and {} s)",
        (GENERATE,),
        lambda d: [
            machine(d["machine"]),
            str(d["batch"]),
            str(d["tokens"]),
            str(d["rounds"]),
            f2(d["ms_per_token"]["kv_cache"]),
            f2(d["ms_per_token"]["window"]),
            f2(d["speedup_of_cache"]),
            f1(d["first_call_s"]["kv_cache"]),
            f1(d["first_call_s"]["window"]),
        ],
    ),
    Quote(B, "arithmetic for {} × the time", (GENERATE,), lambda d: [f1(d["speedup_of_cache"])]),
    Quote(
        B,
        "On the {*} (jax {}), 3 MB of the standard library's sources: validation bits per "
        "byte {} after epoch 1 and **{}** after epoch 2 (train loss {} and {} nats, the mean "
        "of each epoch's steps), `fnn train` {} s in all, its fit {} s: the goal (≤ 2.0 within "
        "10 minutes on 2 CPU cores) is {*}.",
        (TEXT,),
        lambda d: [
            machine(d["machine"]),
            d["machine"]["jax"],
            f3(d["history"]["test_bits_per_byte"][0]),
            f3(d["test_bits_per_byte"]),
            f3(d["history"]["train_loss"][0]),
            f3(d["history"]["train_loss"][1]),
            f0(d["train_command_s"]),
            f0(d["fit_wall_s"]),
            met(d["test_bits_per_byte"] <= 2.0 and d["train_command_s"] <= 600),
        ],
    ),
]

BENCH_ALLOWED = [
    Allowed(
        B,
        "# ~1.5 min on a 2-core CPU (~3 min with the peers)",
        "a command's approximate run time, guidance",
    ),
    Allowed(
        B,
        "(~25 min on the 2-core CPU with the peers)",
        "a command's approximate run time, guidance",
    ),
    Allowed(B, "the GPU grid, ≤ ~5 min", "the GPU script's time budget"),
    Allowed(B, "stopping new cases after 270 s", "the GPU script's setting"),
    Allowed(B, "3 MB of the standard library's sources", "the corpus size, a setting"),
    Allowed(B, "within 10 minutes on 2 CPU cores", "the text recipe's goal"),
    Allowed(B, "about 128 × the arithmetic", "128 positions against one, by construction"),
]

# ------------------------------------------------------------- the harness's own trust

ORDER_BIAS = "order_bias.json"  # python benchmarks/order_bias.py --repeats 21
ORDER_FAIRNESS = "order_fairness.json"  # python benchmarks/order_fairness.py
MUTATION = "mutation.json"  # python benchmarks/mutation.py
ORDER_CONDITIONS = {
    "after_jax": "right after a JAX matmul",
    "after_jax_then_warm": "after it, then one untimed call",
    "after_numpy": "right after a numpy (BLAS) matmul",
    "after_numpy_then_warm": "after it, then one untimed call",
    "after_torch": "right after a PyTorch matmul",
    "after_torch_then_warm": "after it, then one untimed call",
}


def order_bias(d) -> str:
    rows = []
    for row in d["rows"]:
        for key, label in ORDER_CONDITIONS.items():
            if key in row["ratio_vs_alone"]:
                rows.append([row["workload"], label, f"{row['ratio_vs_alone'][key]:.3f} ×"])
    return table(["workload", "the step timed", "time ÷ the step alone (median)"], rows)


def order_fairness(d) -> str:
    rows = []
    for workload, s in d["summary"].items():
        mv = s["manual_vs_autodiff"]
        rows.append([
            workload, f3(mv["given"]), f3(mv["reversed"]),
            f"{100 * s['order_difference']:.1f} %", f"{100 * s['aa_spread']:.1f} %",
        ])  # fmt: skip
    given = ",".join(d["runs"]["given"]["impls"])
    reverse = ",".join(d["runs"]["reversed"]["impls"])
    return table(
        ["workload", f"manual ÷ jax.grad, `--impls {given}`", f"`--impls {reverse}`",
         "difference", "A/A spread"],
        rows,
    )  # fmt: skip


def aa_spread(*grids) -> str:
    """The A/A twin's ratio per (workload, dtype) of each grid."""
    rows = [
        [r["workload"], r["dtype"], f3(r["aa_ratio"])]
        for records in grids
        for r in records
        if r.get("aa_ratio") is not None
    ]
    return table(["workload", "dtype", "manual_aa ÷ manual (A/A)"], rows)


def mutation_summary(d) -> str:
    c = d["counts"]
    non_equivalent = c["mutants"] - c["equivalent"]
    return (
        f"**{c['caught']}/{non_equivalent} caught** of {c['mutants']} mutants "
        f"({c['caught (wrong gradient)']} by a wrong gradient, {c['caught (wrong shape)']} "
        f"by a wrong shape, {c['caught (crash)']} by a crash), {c['survived']} survived, "
        f"{c['equivalent']} equivalent; {d['seconds']:.0f} s on {d['machine']}, jax "
        f"{d['jax']} (`results/mutation.json`, one record per mutant)."
    )


PRECISION = "reference_precision.json"  # python benchmarks/reference_precision.py


def reference_precision(d) -> str:
    impls = list(dict.fromkeys(i for row in d["rows"].values() for i in row))
    rows = [
        [workload, *(e1(row[i]["max"]) if i in row else "–" for i in impls)]
        for workload, row in d["rows"].items()
    ]
    return table(["float32 gradient vs float64, max over leaves", *impls], rows)


TRUST_FRAGMENTS = [
    Fragment("reference-precision", (PRECISION,), reference_precision),
    Fragment("order-bias", (ORDER_BIAS,), order_bias),
    Fragment("order-fairness", (ORDER_FAIRNESS,), order_fairness),
    Fragment("aa-amd", (AMD,), aa_spread),
    Fragment("mutation-bench", (MUTATION,), mutation_summary),
]
TRUST_QUOTES = [
    Quote(
        CHECKER_RESULTS,
        "fnn's own backward code: {*} mutants caught (`benchmarks/mutation.py`).",
        (MUTATION,),
        lambda d: [f"{d['counts']['caught']}/{d['counts']['mutants'] - d['counts']['equivalent']}"],
    ),
]


def bench_record_fields() -> str:
    """A bench record's fields and their meanings, from the code, not a results file."""
    from fnn.bench.records import field_list

    return field_list()


CODE_FRAGMENTS = [Fragment("bench-record-fields", (), bench_record_fields)]

FRAGMENTS = PAGE_FRAGMENTS + SCALING_FRAGMENTS + BENCH_FRAGMENTS + TRUST_FRAGMENTS + CODE_FRAGMENTS
QUOTES = PAGE_QUOTES + SCALING_QUOTES + BENCH_QUOTES + TRUST_QUOTES
ALLOWED = PAGE_ALLOWED + SCALING_ALLOWED + BENCH_ALLOWED
