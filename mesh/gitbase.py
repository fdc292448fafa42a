"""Rendering a stack as it was at a git ref, with that ref's own code.

The base's objects must come from the base's code: the working tree's code may render the same
config differently, and the diff would then show changes that the pull request does not make.
The ref's tree is exported with `git archive` (committed files only, nothing of the working
tree) and `python -m mesh render <stack> -q` runs there in a subprocess, with this interpreter.
A base whose code can print JSON (`render --format json`) is asked for JSON, which parses many
times faster than YAML into the same objects; an older base is read as YAML. A base whose
render has `--charts` is asked for its Helm releases too, as objects (mesh.charts
`HelmChart.as_object`); an older base's releases are not known (`BaseRender.charts` None).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.charts import is_chart_object
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
    # The base's Helm releases as objects (`render --charts`); None: its code cannot list
    # them (older than the option), so they are not compared.
    charts: list[dict] | None = None


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


# What the base's code has when its render can list the Helm releases as objects.
CHARTS_MARKER = '"--charts"'


def renders_charts(tree: Path) -> bool:
    """Whether the code in `tree` has `render --charts` (read from its source, as
    `renders_json`); a base where this cannot tell lists no releases."""
    try:
        return CHARTS_MARKER in (tree / "mesh" / "cli.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """The garbage collector paused for a block that builds a large structure and frees
    nothing: parsing a stack's rendered objects (hundreds of thousands of dicts and lists).
    CPython collects the youngest generation every 700 new containers and, every 10 of those,
    the next one, each pass walking every object of the generations it collects
    (`gc.get_threshold()`, Modules/gcmodule.c); with nothing to free, the passes are pure cost.
    The collector's state is restored afterwards: a caller that had it off keeps it off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RunningRender:
    """`python -m mesh render <stack> -q` started by the code in `tree`, as JSON where that
    code can print it (`renders_json`), else as YAML; `result()` waits for it and parses it.
    The caller works while it runs, with no thread of its own: the output goes to unnamed
    temporary files, not pipes, so a render larger than a pipe's buffer never waits for a
    reader (`subprocess.run` reads pipes from the calling thread; a second thread reading
    them would compete for the GIL with the caller's work, and slow both)."""

    def __init__(self, tree: Path, stack: str):
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.as_json = renders_json(tree)
        self.with_charts = self.as_json and renders_charts(tree)
        # Text files as `subprocess.run(..., text=True)` reads its pipes: the locale's
        # encoding, universal newlines.
        self._stdout = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by close())
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    *("-m", "mesh", "render", stack, "-q"),
                    *(["-o", "json"] if self.as_json else []),
                    *(["--charts"] if self.with_charts else []),
                ],
                cwd=tree,
                env=env,
                stdout=self._stdout,
                stderr=self._stderr,
            )
        except BaseException:
            self._stdout.close()
            self._stderr.close()
            raise

    def result(self) -> list[dict]:
        """The rendered objects, or BaseRenderError with the end of the base's error output;
        with `with_charts`, the Helm releases among them (`split_charts` separates them)."""
        try:
            code = self._process.wait()
            self._stdout.seek(0)
            self._stderr.seek(0)
            stdout, stderr = self._stdout.read(), self._stderr.read()
        finally:
            self.close()
        if code != 0:
            lines = stderr.strip().splitlines()[-MAX_ERROR_LINES:]
            raise BaseRenderError("\n".join(lines) if lines else f"exit {code}, no error output")
        with paused_collector():
            if self.as_json:
                return [doc for doc in json.loads(stdout) if doc]
            return [doc for doc in yaml.load_all(stdout, Loader=SAFE_LOADER) if doc]

    def close(self) -> None:
        """The render stopped if it still runs (its output is no longer wanted), files closed."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stdout.close()
        self._stderr.close()


def split_charts(documents: list[dict]) -> tuple[list[dict], list[dict]]:
    """(objects, Helm releases) of a render's documents."""
    charts = [d for d in documents if is_chart_object(d)]
    return [d for d in documents if not is_chart_object(d)], charts


def render_tree(tree: Path, stack: str) -> list[dict]:
    """`python -m mesh render <stack> -q` run by the code in `tree`, parsed: as JSON where
    that code can print it (`renders_json`), else as YAML."""
    return RunningRender(tree, stack).result()


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


class PendingBase:
    """The base of a stack, rendering: the ref resolved, its tree exported and its render
    started (`RunningRender`) when this is made; `result()` reads the base's config while the
    render runs, then waits for it. `mesh diff` builds the head's plan meanwhile. As the
    future it replaces, a GitBaseError of the start (an unknown ref, not a git checkout) is
    raised by `result()`, so the head's own errors still come first. A context manager: on
    leaving, a render still running is stopped and the exported tree removed."""

    def __init__(self, ref: str, stack: str):
        self.ref, self.stack = ref, stack
        self.error: GitBaseError | None = None
        # Read from the exported tree (the stack file, policy/config.json) once it is there.
        self.pack_config: dict[str, Any] | None = None
        self.pack_error: str | None = None
        self.exists = False
        self._render: RunningRender | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        try:
            self.commit = resolve(ref)
            self._tmp = tempfile.TemporaryDirectory(prefix="ml-mesh-base-")
            tree = Path(self._tmp.name)
            export_tree(self.commit, tree)
        except GitBaseError as exc:
            self.error = exc
            self.close()
            return
        except BaseException:
            self.close()
            raise
        self.stack_file = tree / f"Pulumi.{stack}.yaml"
        self.pack_config, self.pack_error = read_pack_config(tree)
        self.exists = self.stack_file.is_file() and (tree / "mesh" / "__main__.py").is_file()
        if self.exists:
            try:
                self._render = RunningRender(tree, stack)
            except BaseException:
                self.close()
                raise

    def result(self) -> BaseRender:
        try:
            return self._result()
        finally:
            self.close()

    def _result(self) -> BaseRender:
        if self.error is not None:
            raise self.error
        ref, commit, pack, pack_error = self.ref, self.commit, self.pack_config, self.pack_error
        if self._render is None:  # no such stack: no releases either
            return BaseRender(ref, commit, [], False, None, {}, None, pack, pack_error, [])
        config, raw = _read_config(self.stack_file)
        try:
            documents = self._render.result()
        except BaseRenderError as exc:
            return BaseRender(ref, commit, [], True, config, raw, str(exc), pack, pack_error)
        objects, charts = split_charts(documents)
        known = charts if self._render.with_charts else None
        return BaseRender(ref, commit, objects, True, config, raw, None, pack, pack_error, known)

    def close(self) -> None:
        if self._render is not None:
            self._render.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PendingBase:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def render_base(ref: str, stack: str) -> BaseRender:
    """The stack as the base renders it, with its config and pack config."""
    with PendingBase(ref, stack) as pending:
        return pending.result()
