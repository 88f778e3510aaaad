"""The examples in ctcimg's docstrings run as tests (examples that need files are +SKIP)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import ctcimg

MODULES = sorted(info.name for info in pkgutil.walk_packages(ctcimg.__path__, "ctcimg.")
                 if info.name != "ctcimg.__main__")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_docstring_examples_are_found() -> None:
    finder = doctest.DocTestFinder()
    examples = sum(len(test.examples) for name in MODULES
                   for test in finder.find(importlib.import_module(name)))
    assert examples >= 20  # a finder that sees nothing would make the test above vacuous
