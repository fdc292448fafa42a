"""Shared fixtures: the committed stack files as raw config, and a way to edit one path."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.config import ConfigError, parse_config
from mesh.plan import build_plan
from mesh.stackfile import raw_project_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_DIR.parent / "shared"
STACKS = ("dev", "prod")


def stack_raw(stack: str) -> dict[str, Any]:
    """`ml-mesh:*` of a committed stack file, as the Pulumi engine would pass it."""
    document = yaml.safe_load((PROJECT_DIR / f"Pulumi.{stack}.yaml").read_text())
    return raw_project_config(document)


def with_value(raw: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `raw` with the dotted `path` set (like `pulumi config set --path`)."""
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return out


def without(raw: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of `raw` with the dotted `path` removed (`pulumi config rm --path`)."""
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


@pytest.fixture
def dev() -> dict[str, Any]:
    return stack_raw("dev")


@pytest.fixture
def prod() -> dict[str, Any]:
    return stack_raw("prod")


def run_mesh(*args: str, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess:
    """`python -m mesh <args>` as a user runs it, output captured, exit code left to the test."""
    return subprocess.run(
        [sys.executable, "-m", "mesh", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def plan_objects(raw: dict[str, Any], stack: str = "dev") -> list[dict[str, Any]]:
    """Every object the stack would create, straight from the builders (no Pulumi)."""
    return build_plan(parse_config(raw, stack)).objects()


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The one object of `kind` named `name` (fails if there is none or more than one)."""
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test naming what is missing (a fresh user clone)."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it sits beside the checkout in CI)")
    return path


EXAMPLES_DIR = PROJECT_DIR / "examples"
EXAMPLES = tuple(sorted(EXAMPLES_DIR.glob("Pulumi.*.yaml")))
# Every stack file the project ships: the committed stacks by name, the examples by path.
STACK_SOURCES = (*STACKS, *(str(path) for path in EXAMPLES))


def source_id(source: str) -> str:
    """`dev` -> `dev`, `.../examples/Pulumi.prod-like.yaml` -> `examples/prod-like`."""
    path = Path(source)
    return f"examples/{path.stem.removeprefix('Pulumi.')}" if path.suffix else source


def assert_refused(parse: Any, edits: dict[str, Any], path: str, words: list[str]) -> None:
    """`parse(edits)` refuses the config with a problem at `path` whose message says every
    one of `words` (the refusal tables of the config tests)."""
    with pytest.raises(ConfigError) as caught:
        parse(edits)
    problems = {p.path: p.message for p in caught.value.problems}
    assert path in problems, problems
    for word in words:
        assert word in problems[path]
