"""The one line `mesh diff` prints on stderr when the base does not render: what is wrong."""

from __future__ import annotations

import pytest

from mesh.cli import _headline


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (  # a YAML error: its source line and caret follow the message
            "Pulumi.prod.yaml:3:1: duplicate key `x` (stack 'prod')\n  3 | x: 1\n    | ^",
            "Pulumi.prod.yaml:3:1: duplicate key `x` (stack 'prod')",
        ),
        (
            "ml-mesh: invalid config for stack 'prod': a\nml-mesh: invalid config for stack 'prod': b",
            "ml-mesh: invalid config for stack 'prod': a (and 1 more problem)",
        ),
        (
            "Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'k'",
            "KeyError: 'k'",
        ),
        ("", "no error output"),
    ],
    ids=["yaml", "config", "traceback", "empty"],
)
def test_the_headline_of_a_base_error_is_the_line_that_says_what_is_wrong(error, line):
    assert _headline(error) == line
