"""Every hook is documented (docs/hooks.md is current) and exercised by a test."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from odirkit import hookspecs
from odirkit.plugins import KIND_HOOKS

ROOT = Path(__file__).parents[1]


def test_docs_hooks_md_is_generated_from_the_hookspecs():
    assert (ROOT / "docs" / "hooks.md").read_text() == hookspecs.render_markdown(), (
        "docs/hooks.md is stale: regenerate it from odirkit.hookspecs.render_markdown()"
    )


@pytest.mark.parametrize("name", hookspecs.hook_names())
def test_every_hook_has_a_docstring_and_a_kind(name):
    doc = inspect.getdoc(getattr(hookspecs, name))
    assert doc and len(doc.splitlines()) > 3, f"{name} needs a real docstring"
    assert name in KIND_HOOKS.values()


@pytest.mark.parametrize("name", hookspecs.hook_names())
def test_every_hook_is_implemented_in_a_test(name):
    users = [
        p
        for p in (ROOT / "tests").rglob("*.py")
        if p.name != "test_hooks.py" and name in p.read_text()
    ]
    assert users, f"no test implements {name}"
