"""Rendering a stack as it was at a git ref, with that ref's own code.

The base's objects must come from the base's code: the working tree's code may render the same
config differently, and the diff would then show changes that the pull request does not make.
The ref's tree is exported with `git archive` (committed files only, nothing of the working
tree) and `python -m mesh render <stack> -q` runs there in a subprocess, with this interpreter.
A base whose code can print JSON (`render --format json`) is asked for JSON, which parses many
times faster than YAML into the same objects; an older base is read as YAML.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.config import ConfigError, StackConfig
from mesh.stackfile import PROJECT_DIR, load_stack, raw_project_config, read_stack_document
from policy import rules

# libyaml's parser where PyYAML has it (its wheels do): the same documents, several times faster
# than the pure-Python one on a large stack's render.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GitBaseError(Exception):
    """The base cannot be read (unknown ref, not a git checkout)."""


class BaseRenderError(GitBaseError):
    """The base's own code refuses to render the stack; `str()` is the base's error."""


# The most of the base's error output a report quotes (the end of it: a traceback's last
# lines, or ml-mesh's one-line message).
MAX_ERROR_LINES = 20


@dataclass(frozen=True)
class BaseRender:
    ref: str
    commit: str
    objects: list[dict]
    exists: bool  # False: the base has no such stack (a new stack): everything is added
    config: StackConfig | None  # the base config as this code reads it, for roles; None if not
    # `ml-mesh:*` of the base stack file, for the policy settings; None when the file does not
    # read at all (a YAML error, a duplicate key, not a mapping): every protection strictest.
    raw: dict[str, Any] | None
    error: str | None = None  # the base does not render: its error output (objects empty)
    # The base's policy pack config (policy/config.json; {} where the base has none, the
    # pack's defaults); None with `pack_error` when it does not read.
    pack_config: dict[str, Any] | None = None
    pack_error: str | None = None


def read_pack_config(tree: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The pack config of an exported tree, read and checked by the pack's own
    `rules.pack_config` (the working tree's copy: the file's format is Pulumi's, not the
    code's); ({}, None) where the tree has none, (None, problem) where it does not read."""
    path = tree / "policy" / "config.json"
    if not path.is_file():
        return {}, None
    try:
        return rules.pack_config(path, "the base's policy/config.json"), None
    except rules.PackConfigError as exc:
        return None, str(exc)


def _git(*args: str, cwd: Path = PROJECT_DIR) -> bytes:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    if result.returncode != 0:
        problem = result.stderr.decode(errors="replace").strip().splitlines()
        raise GitBaseError(f"git {' '.join(args)}: {problem[-1] if problem else 'failed'}")
    return result.stdout


def resolve(ref: str) -> str:
    """The commit a ref names, or GitBaseError."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
    except GitBaseError:
        raise GitBaseError(f"{ref!r} is not a commit in this repository") from None


def export_tree(commit: str, into: Path) -> None:
    """The project directory as committed at `commit`, written into `into`."""
    prefix = _git("rev-parse", "--show-prefix").decode().strip().rstrip("/")
    tree = f"{commit}:{prefix}" if prefix else commit
    archive = _git("archive", "--format=tar", tree)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


# What the base's code has when its render can print JSON: the function that prints it.
JSON_MARKER = "def to_json_documents("


def renders_json(tree: Path) -> bool:
    """Whether the code in `tree` has `render --format json`: read from its source, so that an
    older base costs no failed run. A base where this cannot tell is read as YAML (slower,
    the same objects)."""
    try:
        return JSON_MARKER in (tree / "mesh" / "render.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def render_tree(tree: Path, stack: str) -> list[dict]:
    """`python -m mesh render <stack> -q` run by the code in `tree`, parsed: as JSON where
    that code can print it (`renders_json`), else as YAML."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    as_json = renders_json(tree)
    result = subprocess.run(
        [sys.executable, "-m", "mesh", "render", stack, "-q", *(["-o", "json"] if as_json else [])],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()[-MAX_ERROR_LINES:]
        raise BaseRenderError(
            "\n".join(lines) if lines else f"exit {result.returncode}, no error output"
        )
    if as_json:
        return [doc for doc in json.loads(result.stdout) if doc]
    return [doc for doc in yaml.load_all(result.stdout, Loader=SAFE_LOADER) if doc]


def _read_config(path: Path) -> tuple[StackConfig | None, dict[str, Any] | None]:
    """The base's config as this code reads it, and its `ml-mesh:*` keys, the file read once
    where this code reads it; key by key (config None) for an older schema; (None, None) when
    the file does not read at all, which `mesh.protections.of_side` counts as strictest (an
    unreadable base never loosens a gate)."""
    try:
        loaded = load_stack(str(path))
        return loaded.config, loaded.raw
    except ConfigError:  # an older schema, or unreadable: read key by key below
        pass
    try:
        raw = raw_project_config(read_stack_document(path, path.stem.removeprefix("Pulumi.")))
    except (ConfigError, ValueError, AttributeError, OSError):
        return None, None
    if not isinstance(raw, dict):
        return None, None
    return None, raw  # the objects still tell the routing, minus roles


def render_base(ref: str, stack: str) -> BaseRender:
    commit = resolve(ref)
    with tempfile.TemporaryDirectory(prefix="ml-mesh-base-") as tmp:
        tree = Path(tmp)
        export_tree(commit, tree)
        stack_file = tree / f"Pulumi.{stack}.yaml"
        pack, pack_error = read_pack_config(tree)
        if not stack_file.is_file() or not (tree / "mesh" / "__main__.py").is_file():
            return BaseRender(ref, commit, [], False, None, {}, None, pack, pack_error)
        config, raw = _read_config(stack_file)
        try:
            objects = render_tree(tree, stack)
        except BaseRenderError as exc:
            return BaseRender(ref, commit, [], True, config, raw, str(exc), pack, pack_error)
        return BaseRender(ref, commit, objects, True, config, raw, None, pack, pack_error)
