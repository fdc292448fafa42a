"""Regenerate, or check, every command output shown in README.md and docs/*.md.

The docs show no output that was typed by hand. Each shown output is a marked block:

    <!-- output: python -m mesh trace prod | head 12 -->
    ```text
    $ python -m mesh trace prod
    ...
    ```

and each generated Markdown section (the config reference) sits between

    <!-- generated: python -m mesh reference -->
    ...
    <!-- end generated -->

`python -m docs` runs every marked command in the project directory and rewrites the blocks;
`python -m docs --check` (and tests/test_docs.py) fails, naming the file, the line and the
command, where a block differs from what the command prints now.

A marker's first line is `output: <command>`, optionally followed by ` | <filter>` steps, done
here in Python, never by a shell: `head N` (the first N lines, then `...`), `tail N` (`...`, then
the last N), `lines 1-12,-1` (those lines, 1-based, negative from the end, `...` between gaps),
`upto TEXT` (the lines before the first that starts with TEXT, then `...`), `grep TEXT` (the
lines containing TEXT). Further lines of the marker are `key: value`:
- `edit: pulumi config set --path KEY VALUE -s STACK` (repeatable, also `pulumi config rm`):
  the command then runs in a scratch copy of the project, a git repository whose one commit on
  branch `main` is the unedited tree, after these edits (docs/pulumi_path.py emulates the CLI).
  So `python -m mesh diff STACK --base main` shows exactly what the edits change; the scratch
  commit's id is shown as `<commit>`, since it depends on every file of the tree (and the
  project's directory, wherever it is, as `<project>`);
- `exit: N`: the exit status the command must have (default 0); any other fails the build;
- `stderr: yes`: what the command writes to stderr is shown after its stdout.
Only `python ...` commands run (with this interpreter); they must be offline and deterministic.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from docs.pulumi_path import apply_to_project

PROJECT_DIR = Path(__file__).resolve().parent.parent
REGENERATE = "python -m docs"
DOC_FILES = ("README.md", "docs/*.md")
# `<!-- output: ... -->` then a fenced block; `<!-- generated: ... -->` ... `<!-- end generated -->`
OUTPUT_BLOCK = re.compile(
    r"<!-- output: (?P<spec>.*?)-->\n(?P<body>(?P<fence>`{3,})(?P<lang>[a-z]*)\n.*?^(?P=fence)[ \t]*)$",
    re.DOTALL | re.MULTILINE,
)
GENERATED_BLOCK = re.compile(
    r"<!-- generated: (?P<spec>.*?)-->\n(?P<body>.*?)^<!-- end generated -->$",
    re.DOTALL | re.MULTILINE,
)
SCRATCH_ENV = {
    "GIT_AUTHOR_NAME": "docs",
    "GIT_AUTHOR_EMAIL": "docs@example.com",
    "GIT_COMMITTER_NAME": "docs",
    "GIT_COMMITTER_EMAIL": "docs@example.com",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class DocsError(Exception):
    """A marked block whose command cannot be run as written (bad marker, wrong exit)."""


@dataclass(frozen=True)
class Spec:
    command: str
    filters: tuple[str, ...] = ()
    edits: tuple[str, ...] = ()
    exit: int = 0
    stderr: bool = False


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    spec: Spec
    kind: str  # "output": a fenced block of text; "generated": Markdown in place
    start: int  # offsets of the body in the file's text
    end: int
    body: str  # an output block's body includes its fences
    lang: str = "text"

    @property
    def where(self) -> str:
        path = (
            self.path.relative_to(PROJECT_DIR)
            if self.path.is_relative_to(PROJECT_DIR)
            else self.path
        )
        return f"{path}:{self.line}"


def parse_spec(text: str) -> Spec:
    """The marker's text after `output:`/`generated:` (see the module docstring)."""
    first, *more = [line.strip() for line in text.strip().splitlines() if line.strip()]
    command, *filters = [part.strip() for part in first.split(" | ")]
    edits: list[str] = []
    exit_status, stderr = 0, False
    for line in more:
        key, sep, value = line.partition(":")
        value = value.strip()
        if not sep:
            raise DocsError(f"marker line {line!r} is not `key: value`")
        if key == "edit":
            edits.append(value)
        elif key == "exit":
            exit_status = int(value)
        elif key == "stderr":
            stderr = value == "yes"
        else:
            raise DocsError(f"unknown marker key {key!r} (edit, exit, stderr)")
    for step in filters:
        _filter(step, ["x"])  # refuse an unknown filter before running anything
    return Spec(command, tuple(filters), tuple(edits), exit_status, stderr)


def doc_files(project: Path = PROJECT_DIR) -> list[Path]:
    found: list[Path] = []
    for pattern in DOC_FILES:
        found += sorted(project.glob(pattern))
    return found


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found: list[Block] = []
    for kind, pattern in (("output", OUTPUT_BLOCK), ("generated", GENERATED_BLOCK)):
        for match in pattern.finditer(text):
            found.append(
                Block(
                    path=path,
                    line=text.count("\n", 0, match.start()) + 1,
                    spec=parse_spec(match["spec"]),
                    kind=kind,
                    start=match.start("body"),
                    end=match.end("body"),
                    body=match["body"],
                    lang=match.groupdict().get("lang") or "text",
                )
            )
    return sorted(found, key=lambda b: b.start)


def all_blocks(project: Path = PROJECT_DIR) -> list[Block]:
    return [block for path in doc_files(project) for block in blocks(path)]


def _filter(step: str, lines: list[str]) -> list[str]:
    name, _, argument = step.partition(" ")
    if name == "head":
        count = int(argument)
        return lines[:count] + (["..."] if len(lines) > count else [])
    if name == "tail":
        count = int(argument)
        return (["..."] if len(lines) > count else []) + lines[-count:]
    if name == "upto":
        ends = [i for i, line in enumerate(lines) if line.startswith(argument)]
        return [*lines[: ends[0]], "..."] if ends else lines
    if name == "grep":
        return [line for line in lines if argument in line]
    if name == "lines":
        return _lines(argument, lines)
    raise DocsError(
        f"unknown filter {step!r} (head N, tail N, lines A-B,..., upto TEXT, grep TEXT)"
    )


def _lines(ranges: str, lines: list[str]) -> list[str]:
    """`1-12,-1`: lines 1 to 12 and the last one, `...` where lines are left out."""
    chosen: list[int] = []
    for part in ranges.split(","):
        match = re.fullmatch(r"\s*(-?\d+)(?:-(\d+))?\s*", part)
        if match is None:
            raise DocsError(f"`lines {ranges}`: {part!r} is not N, -N or A-B")
        start = int(match[1])
        stop = int(match[2]) if match[2] else start
        for number in range(start, stop + 1):
            index = number - 1 if number > 0 else len(lines) + number
            if 0 <= index < len(lines) and index not in chosen:
                chosen.append(index)
    shown: list[str] = []
    previous = -1
    for index in sorted(chosen):
        if index != previous + 1:
            shown.append("...")
        shown.append(lines[index])
        previous = index
    if previous != len(lines) - 1:
        shown.append("...")
    return shown


def _argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if not argv or argv[0] != "python":
        raise DocsError(f"only `python ...` commands are run: {command!r}")
    return [sys.executable, *argv[1:]]


def _scratch_copy(into: Path) -> str:
    """The project's files (tracked and untracked, not ignored) as one commit on `main`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_DIR / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    env = {**os.environ, **SCRATCH_ENV}
    for git in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "docs base"]):
        subprocess.run(["git", *git], cwd=into, env=env, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=into, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


def mask(text: str, project: Path, commit: str | None) -> str:
    """Make an output independent of where the project sits: its directory (a scratch copy's
    is random, a checkout's differs between machines) reads `<project>`, and the scratch
    commit's id (any abbreviation of 7+ digits) `<commit>`."""
    for directory in {str(project), str(project.resolve())}:
        text = text.replace(directory, "<project>")
    if commit is not None:
        text = re.sub(rf"\b{commit[:7]}[0-9a-f]{{0,33}}\b", "<commit>", text)
    return text


def run(spec: Spec) -> str:
    """What the block shows: the command's output after the filters, with `$` lines."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory(prefix="ml-mesh-docs-") as scratch:
        cwd, commit = PROJECT_DIR, None
        if spec.edits:
            cwd = Path(scratch)
            commit = _scratch_copy(cwd)
            for edit in spec.edits:
                apply_to_project(cwd, edit)
        result = subprocess.run(
            _argv(spec.command), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    if result.returncode != spec.exit:
        raise DocsError(
            f"`{spec.command}` exited {result.returncode}, the marker expects {spec.exit}: "
            + (result.stderr.strip().splitlines() or ["no stderr"])[-1]
        )
    text = mask(result.stdout + (result.stderr if spec.stderr else ""), cwd, commit)
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    for step in spec.filters:
        lines = _filter(step, lines)
    return "\n".join(lines)


def expected_body(block: Block) -> str:
    """The body the block must have now."""
    try:
        shown = run(block.spec)
    except DocsError as exc:
        raise DocsError(f"{block.where}: {exc}") from None
    if block.kind == "generated":
        return shown + "\n"
    prompts = [f"$ {edit}" for edit in block.spec.edits] + [f"$ {block.spec.command}"]
    text = "\n".join([*prompts, shown]).rstrip("\n")
    # A fence longer than any backtick run that starts a line of the output (which may hold a
    # fenced block of its own, as `mesh diff` does) so that the output cannot close it.
    runs = [len(line) - len(line.lstrip("`")) for line in text.split("\n")]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}{block.lang}\n{text}\n{fence}"


def stale_message(block: Block) -> str:
    return (
        f"{block.where}: the output of `{block.spec.command}` shown there is not what it prints "
        f"now; regenerate with `{REGENERATE}`"
    )


def rebuild(path: Path) -> bool:
    """Rewrite the blocks of one file; whether anything changed."""
    text = path.read_text()
    pieces: list[str] = []
    position = 0
    for block in blocks(path):
        pieces += [text[position : block.start], expected_body(block)]
        position = block.end
    pieces.append(text[position:])
    new = "".join(pieces)
    if new != text:
        path.write_text(new)
    return new != text


def check(project: Path = PROJECT_DIR) -> Iterator[str]:
    for block in all_blocks(project):
        if expected_body(block) != block.body:
            yield stale_message(block)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args == ["--check"]:
            problems = list(check())
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        if args:
            print(f"usage: {REGENERATE} [--check]", file=sys.stderr)
            return 2
        for path in doc_files():
            if rebuild(path):
                print(f"rewrote {path.relative_to(PROJECT_DIR)}")
    except DocsError as exc:
        print(f"docs: {exc}", file=sys.stderr)
        return 1
    return 0
