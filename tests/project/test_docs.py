"""The documentation: README.md and the site under docs/ (mkdocs.yml).

Every ```python block of a page runs, the page's blocks in order in one namespace, as a
reader would run them one after another; every page is in the site's navigation; README.md
stays a front door of at most 150 lines. The strict build: tests/project/test_site.py.
"""

import re
from pathlib import Path

import jax
import pytest
from helpers.bench import small_peak_probe

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 150
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", flags=re.M | re.S)


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


PAGES = [README, *sorted(DOCS.rglob("*.md"))]
PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.slow  # each page compiles its own programs: a few seconds each
@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=page_id)
def test_every_python_block_of_a_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a block writes lands in a temporary directory
    monkeypatch.syspath_prepend(str(tmp_path))
    small_peak_probe(monkeypatch)  # the blocks run, timing nothing here
    namespace = {"__name__": "__main__"}
    # user code runs with JAX's default rank promotion ("allow"), not the suite's "raise"
    with jax.numpy_rank_promotion("allow"):
        for index, block in enumerate(python_blocks(page)):
            # each block from a file of its own, as a script would be: tools that read a
            # function's source (fnn.check.mutation_test) find it there
            source = tmp_path / f"{page.stem}_block{index}.py"
            source.write_text(block)
            try:
                exec(compile(block, str(source), "exec"), namespace)
            except Exception as error:
                error.add_note(f"in {page_id(page)}, python block {index}:\n{block}")
                raise


def test_python_blocks_are_found():
    assert len(python_blocks(README)) >= 3  # the three examples
    assert {page.name for page in PAGES_WITH_CODE} >= {"README.md", "getting-started.md"}


def nav_pages(nav) -> list[str]:
    """Every page file named in mkdocs.yml's `nav`, at any depth."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for item in nav for page in nav_pages(item)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def test_every_page_is_in_the_navigation_and_every_entry_is_a_page():
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with the docs extra")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config["strict"] is True
    listed = nav_pages(config["nav"])
    pages = sorted(page.relative_to(DOCS).as_posix() for page in DOCS.rglob("*.md"))
    assert sorted(set(pages) - set(listed)) == [], "pages missing from mkdocs.yml's nav"
    assert sorted(set(listed) - set(pages)) == [], "nav entries without a page"
    assert len(listed) == len(set(listed)), "a page listed twice"


def test_the_api_reference_covers_the_modules_users_import():
    api = {page.stem: page.read_text() for page in (DOCS / "api").glob("*.md")}
    modules = ("fnn", "fnn.train", "fnn.check", "fnn.data", "fnn.experiment", "fnn.bench")
    for module in (*modules, "fnn.errors"):
        assert any(f"::: {module}\n" in text for text in api.values()), module


def test_readme_is_a_front_door_of_at_most_150_lines():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"


def test_readme_has_the_two_quick_start_commands():
    text = README.read_text()
    assert "pip install . && .venv/bin/fnn train" in text
    assert 'pip install -e ".[dev]" && .venv/bin/python -m pytest -q' in text


def test_readme_links_to_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README.read_text())
    assert links, "README.md links to no docs page"
    assert [link for link in links if not (ROOT / link).is_file()] == []
