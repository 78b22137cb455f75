"""Every figure the docs quote, traced to a committed results file.

README.md, the pages under docs/ and benchmarks/README.md quote measured figures: step times,
ratios, memory, accuracies, bits per byte. Each comes from a results file under
benchmarks/results/ written by a committed script or command; `doc_figures.py` (beside
this file) says which file and how. A figure is held in one of two ways:

- a *fragment*: a table or a few lines rendered whole from results files, between a
  `<!-- render: NAME -->` line and a `<!-- /render -->` line in the markdown;
- a *quote*: a figure in running prose, registered by the words around it, each figure a
  `{}` (one word: `"the cache is **{} ×** faster"`) or `{*}` (a few words, between fixed
  words on both sides) filled from a results file.

A fragment may be *pending*: its results file is not written yet, and it renders as a
line naming the command that writes it. Numbers that look like measurements but are not
(settings, tolerances, goals, shapes) sit on the allow-list, each with its reason.

    python benchmarks/render.py          # rewrite every fragment and quoted figure
    python benchmarks/render.py --check  # change nothing; exit 1 naming each difference

`--check` exits 1 when a quoted figure differs from its file (naming the document, the
line, the quoted text and the file's value), when a fragment differs from its rendering,
when a registered results file is missing, when a registered quote or allow-list entry
no longer matches its document, and when a number that looks like a measurement (a
number followed by ms, s, ×, %, MiB, GFLOP/s, ...) is neither in a fragment, nor a
registered quote's figure, nor allowed: a new unbacked figure fails it.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# ---------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Fragment:
    """Markdown rendered whole from results files: `render(*loaded files) -> str`."""

    name: str
    files: tuple[str, ...]  # paths under benchmarks/results/
    render: Callable[..., str]
    pending: str | None = None  # the command that writes `files`, while none is written


@dataclass(frozen=True)
class Quote:
    """Figures in prose: `template`'s `{}`/`{*}` slots are `values(*loaded files)`."""

    doc: str
    template: str
    files: tuple[str, ...]
    values: Callable[..., Sequence[str]]


@dataclass(frozen=True)
class Allowed:
    """Words holding a number that looks like a measurement but is not one."""

    doc: str
    template: str  # the exact words, whitespace-insensitive
    reason: str


@dataclass(frozen=True)
class Registry:
    docs: tuple[str, ...]
    fragments: tuple[Fragment, ...]
    quotes: tuple[Quote, ...]
    allowed: tuple[Allowed, ...]


def load_registry() -> Registry:
    """`doc_figures`' registry (imported here: it imports this module's classes)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import doc_figures

    return Registry(
        tuple(doc_figures.DOCS),
        tuple(doc_figures.FRAGMENTS),
        tuple(doc_figures.QUOTES),
        tuple(doc_figures.ALLOWED),
    )


# ------------------------------------------------------------------------- results files


class MissingResults(Exception):
    """A registered results file that is not there."""


@dataclass
class Results:
    """Results files under `root`, each read once: JSON as parsed, CSV as a list of rows."""

    root: Path = RESULTS
    cache: dict[str, object] = field(default_factory=dict)

    def load(self, name: str):
        if name not in self.cache:
            path = self.root / name
            if not path.is_file():
                raise MissingResults(name)
            if path.suffix == ".csv":
                with path.open(newline="") as f:
                    self.cache[name] = list(csv.DictReader(f))
            elif path.suffix == ".json":
                self.cache[name] = json.loads(path.read_text())
            else:
                self.cache[name] = path.read_text()
        return self.cache[name]

    def label(self, name: str) -> str:
        try:
            return str((self.root / name).relative_to(ROOT))
        except ValueError:
            return str(self.root / name)


# ------------------------------------------------------------------------------ problems


@dataclass(frozen=True)
class Problem:
    doc: str
    line: int
    message: str

    def __str__(self) -> str:
        return (
            f"{self.doc}:{self.line}: {self.message}"
            if self.line
            else f"{self.doc}: {self.message}"
        )


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- fragments

MARKERS = re.compile(
    r"^<!-- render: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- /render -->$", re.M | re.S
)
PENDING = "*Not measured yet: `{command}` writes `{files}`; then `python benchmarks/render.py`.*"


def render_fragment(fragment: Fragment, results: Results) -> str:
    """The fragment's markdown, ending in a newline; a pending note if its files are missing."""
    try:
        data = [results.load(name) for name in fragment.files]
    except MissingResults:
        if fragment.pending is None:
            raise
        files = ", ".join(f"benchmarks/results/{name}" for name in fragment.files)
        return PENDING.format(command=fragment.pending, files=files) + "\n"
    return fragment.render(*data).rstrip("\n") + "\n"


# -------------------------------------------------------------------------------- quotes

SLOT = re.compile(r"\{\*?\}")


def template_regex(template: str) -> re.Pattern:
    """A template as a regex: its words literal, any whitespace as `\\s+`, each `{}` one
    word (no spaces or brackets), each `{*}` a few words within the paragraph."""
    parts = SLOT.split(template)
    slots = SLOT.findall(template)
    pattern = []
    for i, part in enumerate(parts):
        words = part.split()
        literal = r"\s+".join(re.escape(w) for w in words)
        if part[:1].isspace() and i > 0:
            literal = r"\s+" + literal
        if part[-1:].isspace() and i < len(slots) and words:
            literal += r"\s+"
        pattern.append(literal)
        if i < len(slots):
            before, after = part.strip(), parts[i + 1].strip()
            if slots[i] == "{*}":
                if not before or not after:
                    raise ValueError(f"a {{*}} slot needs fixed words on both sides: {template!r}")
                pattern.append(r"((?:(?!\n[ \t]*\n)[^|]){1,80}?)")
            else:
                lead = r"(?<![^\s(|*_`])" if not before or part[-1:].isspace() else ""
                pattern.append(lead + r"([^\s()|]+)")
    return re.compile("".join(pattern))


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    slots: tuple[tuple[int, int], ...]


def find(template: str, text: str) -> list[Match]:
    regex = template_regex(template)
    return [
        Match(m.start(), m.end(), tuple(m.span(i + 1) for i in range(regex.groups)))
        for m in regex.finditer(text)
    ]


def quote_values(quote: Quote, results: Results) -> list[str]:
    values = [str(v) for v in quote.values(*[results.load(name) for name in quote.files])]
    slots = SLOT.findall(quote.template)
    if len(values) != len(slots):
        raise ValueError(f"{len(values)} values for the {len(slots)} slots of {quote.template!r}")
    for slot, value in zip(slots, values, strict=True):
        if slot == "{}" and (not value or any(c.isspace() or c in "()|" for c in value)):
            raise ValueError(f"{value!r} fills a one-word slot of {quote.template!r}")
    return values


# ------------------------------------------------------------------------------- scanning

NUMBER = r"(?:\d{1,3}(?:[ \u2009\u202f]\d{3})+(?![\d.])|\d+(?:,\d{3})*)(?:\.\d+)?(?:e[-+]?\d+)?"
UNITS = (
    r"[kMGTP]?FLOP(?:s|/s)?|tokens/s|epochs/s|steps/s|bits per byte|nats|times"
    r"|[KMGT]i?B|B|ns|µs|us|ms|s|sec|seconds?|min|minutes?|h|hours?|%"
    r"|×(?!\s*\d)|x(?![\w×])"
)
MEASURE = re.compile(
    rf"(?<![\w.\-/^·⁻])(?<![≤≥<>]\s)(?<![≤≥<>])(?P<figure>(?P<number>{NUMBER}"
    rf"(?:\s*[–-]\s*{NUMBER})?)\s*(?:{UNITS}))(?![\w])"
)


def measurements(text: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Numbers followed by a unit of time, ratio, size, rate or share: for each, the span
    of the whole figure and of its number."""
    return [(m.span("figure"), m.span("number")) for m in MEASURE.finditer(text)]


# ---------------------------------------------------------------------- render and check


@dataclass
class Outcome:
    text: str  # the document as it should be
    problems: list[Problem]
    covered: list[tuple[int, int]]  # spans of the ORIGINAL text held by the registry


class Pass:
    """One document's pass: what it should read, what is wrong, what the registry holds."""

    def __init__(self, doc: str, text: str):
        self.doc, self.text = doc, text
        self.problems: list[Problem] = []
        self.covered: list[tuple[int, int]] = []  # spans of `text` held by the registry
        self.edits: list[tuple[int, int, str]] = []  # (start, end, new text) in `text`

    def problem(self, pos: int | None, message: str) -> None:
        line = 0 if pos is None else line_of(self.text, pos)
        self.problems.append(Problem(self.doc, line, message))

    def fragments(self, registry: Registry, results: Results) -> None:
        known = {f.name: f for f in registry.fragments}
        for m in MARKERS.finditer(self.text):
            name, body = m.group("name"), m.group("body")
            start, end = m.span("body")
            self.covered.append((start, end))
            fragment = known.get(name)
            if fragment is None:
                self.problem(m.start(), f"unknown fragment {name!r}")
                continue
            try:
                want = render_fragment(fragment, results)
            except MissingResults as missing:
                self.problem(m.start(), f"fragment {name}: results file "
                             f"{results.label(str(missing))} is missing")  # fmt: skip
                continue
            except (KeyError, IndexError, TypeError, ValueError) as error:
                self.problem(m.start(), f"fragment {name}: cannot render from {fragment.files}: "
                             f"{error!r}")  # fmt: skip
                continue
            if want != body:
                have_lines, want_lines = body.splitlines(), want.splitlines()
                pairs = zip(have_lines, want_lines, strict=False)
                i = next((k for k, (a, b) in enumerate(pairs) if a != b),
                         min(len(have_lines), len(want_lines)))  # fmt: skip
                have = have_lines[i] if i < len(have_lines) else "(nothing)"
                wanted = want_lines[i] if i < len(want_lines) else "(nothing)"
                files = ", ".join(results.label(f) for f in fragment.files)
                self.problems.append(Problem(
                    self.doc, line_of(self.text, start) + i,
                    f"fragment {name} differs from {files}: the document has {short(have)!r}, "
                    f"the file gives {short(wanted)!r}",
                ))  # fmt: skip
                self.edits.append((start, end, want))

    def quotes(self, registry: Registry, results: Results) -> None:
        held = list(self.covered)  # a quote inside a fragment is the fragment's to render
        for quote in (q for q in registry.quotes if q.doc == self.doc):
            matches = [
                match for match in find(quote.template, self.text)
                if not any(a <= match.start < b for a, b in held)
            ]  # fmt: skip
            if not matches:
                self.problem(None, f"registered quote not found: {short(quote.template)!r}")
                continue
            self.covered.extend(span for match in matches for span in match.slots)
            try:
                values = quote_values(quote, results)
            except MissingResults as missing:
                self.problem(matches[0].start, f"{short(quote.template)!r}: results file "
                             f"{results.label(str(missing))} is missing")  # fmt: skip
                continue
            except (KeyError, IndexError, TypeError, ValueError) as error:
                self.problem(matches[0].start, f"{short(quote.template)!r}: cannot compute "
                             f"from {quote.files}: {error!r}")  # fmt: skip
                continue
            files = ", ".join(results.label(f) for f in quote.files)
            for match in matches:
                for (start, end), value in zip(match.slots, values, strict=True):
                    have = self.text[start:end]
                    if " ".join(have.split()) != value:
                        quoted = short(self.text[match.start : match.end])
                        self.problem(start, f"{quoted!r} quotes {short(have)!r}; {files} "
                                     f"gives {value!r}")  # fmt: skip
                        self.edits.append((start, end, value))

    def allowed(self, registry: Registry) -> None:
        for allowed in (a for a in registry.allowed if a.doc == self.doc):
            matches = find(allowed.template, self.text)
            if not matches:
                self.problem(None, f"allow-list entry not found: {short(allowed.template)!r}")
            self.covered.extend((match.start, match.end) for match in matches)

    def unbacked(self) -> None:
        for (start, end), (n_start, n_end) in measurements(self.text):
            if not any(a <= n_start and n_end <= b for a, b in self.covered):
                self.problem(start, f"{self.text[start:end]!r} looks like a measurement but is "
                             "neither rendered, nor a registered quote, nor allowed")  # fmt: skip

    def rendered(self) -> str:
        new = self.text
        for start, end, value in sorted(self.edits, reverse=True):
            new = new[:start] + value + new[end:]
        return new


def process(doc: str, text: str, registry: Registry, results: Results) -> Outcome:
    """Render `doc`'s fragments and quotes; report what differs, is missing or unbacked."""
    state = Pass(doc, text)
    state.fragments(registry, results)
    state.quotes(registry, results)
    state.allowed(registry)
    state.unbacked()
    return Outcome(state.rendered(), state.problems, state.covered)


def check(
    root: Path = ROOT,
    results: Path = RESULTS,
    docs: Sequence[str] | None = None,
    registry: Registry | None = None,
) -> list[Problem]:
    """Every problem in `docs` (relative to `root`) against the results under `results`."""
    return run(root, results, docs, registry, write=False)


def run(root, results, docs, registry, *, write: bool) -> list[Problem]:
    registry = registry or load_registry()
    store = Results(Path(results))
    names = list(docs) if docs is not None else list(registry.docs)
    problems: list[Problem] = []
    for doc in names:
        path = Path(root) / doc
        text = path.read_text()
        outcome = process(doc, text, registry, store)
        problems.extend(outcome.problems)
        if write and outcome.text != text:
            path.write_text(outcome.text)
    if docs is None:
        used = set()
        for doc in names:
            used.update(m.group("name") for m in MARKERS.finditer((Path(root) / doc).read_text()))
        for fragment in registry.fragments:
            if fragment.name not in used:
                problems.append(
                    Problem(
                        "doc_figures.py",
                        0,
                        f"fragment {fragment.name} is registered but no document has its markers",
                    )
                )
    return problems


def pending(registry: Registry | None = None, results: Path = RESULTS) -> list[Fragment]:
    """The pending fragments whose results files are not written yet."""
    registry = registry or load_registry()
    return [
        f
        for f in registry.fragments
        if f.pending and not all((Path(results) / name).is_file() for name in f.files)
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 on any difference"
    )
    args = parser.parse_args(argv)
    problems = run(ROOT, RESULTS, None, None, write=not args.check)
    for fragment in pending():
        print(f"pending: {fragment.name}: run `{fragment.pending}`")
    if args.check:
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s)" if problems else "every figure matches its file")
        return 1 if problems else 0
    remaining = run(ROOT, RESULTS, None, None, write=False)
    for problem in remaining:
        print(problem)
    print(f"rendered; {len(remaining)} problem(s) left" if remaining else "rendered")
    return 1 if remaining else 0


if __name__ == "__main__":
    sys.modules.setdefault("render", sys.modules["__main__"])
    sys.exit(main())
