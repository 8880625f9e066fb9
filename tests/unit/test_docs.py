"""The documentation holds together: every test docs/guarantees.md names exists, every page of docs/ is
linked from the README, every relative link of README and docs/ points at a file of the repository, and
no line is too long to read in a table."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])
NAMED = re.compile(r"`((?:tests|benchmarks)/[\w/.-]+\.py)(?:::(\w+)(\[[^\]`]+\])?)?`")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MAX_LINE = 300


@cache
def functions_of(path: Path) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function a test file defines (tests, fixtures, in classes too), by name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def parametrized(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any("parametrize" in ast.unparse(decorator) for decorator in function.decorator_list)


def named_tests() -> list[tuple[str, str | None, str | None]]:
    text = (DOCS / "guarantees.md").read_text(encoding="utf-8")
    return [(path, name or None, params or None) for path, name, params in NAMED.findall(text)]


def test_guarantees_names_tests():
    assert len(named_tests()) >= 50


@pytest.mark.parametrize(("path", "name", "params"), named_tests(), ids=lambda value: str(value))
def test_every_test_the_guarantees_page_names_exists(path: str, name: str | None, params: str | None):
    file = ROOT / path
    assert file.is_file(), f"{path} does not exist"
    if name is None:
        return
    function = functions_of(file).get(name)
    assert function is not None, f"{path} defines no {name}"
    if params is not None:
        assert parametrized(function), f"{path}::{name} is named with {params} but is not parametrized"


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = {Path(target).name for target in LINK.findall(readme) if target.startswith("docs/")}
    assert {page.name for page in DOCS.glob("*.md")} - linked == set()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_points_at_a_file_of_the_repository(page: Path):
    broken = [
        target
        for target in LINK.findall(page.read_text(encoding="utf-8"))
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_no_line_of_a_page_is_over_300_characters(page: Path):
    long = [
        number
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > MAX_LINE
    ]
    assert long == []


def test_the_readme_stays_a_front_door_of_about_250_lines():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250
