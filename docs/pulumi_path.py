"""`pulumi config set|rm [--path]` applied to a stack file, without the Pulumi CLI.

The docs show command sequences (the canary walkthrough, the diff example) that a reader types
against the shipped stack files. The docs build (`python -m docs`) and tests/test_docs.py apply
them to scratch copies with this emulation, so each shown step is proven to work in order.

It follows the Pulumi CLI (pulumi/pulumi sdk/go/common/resource/config/map.go):
- a key without a namespace is the project's (`ml-mesh:`); with `--path` its first segment is the
  top-level key and the rest a property path (`a.b["c.d"].e`, `list[0]`,
  resource.ParsePropertyPath), intermediate maps created as needed;
- with `--path` a plain value is typed by `adjustObjectValue`: `true`/`false` become booleans,
  a decimal integer without a leading zero becomes an integer, anything else stays a string
  (so `12.5` is the string "12.5"); without `--path` the value is always a string;
- `rm --path` deletes the addressed key (a missing one is not an error).
Secrets (`--secret`), `--type` and array appends are not modelled: the docs do not use them.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

PROJECT = "ml-mesh"
_SEGMENT = re.compile(r'\.?([^.\[\]"]+)|\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]')


class CommandError(ValueError):
    """A command this emulation does not understand, or one Pulumi would refuse."""


def parse_path(path: str) -> list[str | int]:
    """`models.sentiment.matches.beta.headers["x-beta-user"].exact` -> its segments."""
    segments: list[str | int] = []
    position = 0
    while position < len(path):
        match = _SEGMENT.match(path, position)
        if match is None or match.end() == position:
            raise CommandError(f"invalid config key path {path!r} at {position}")
        name, quoted, index = match.groups()
        if index is not None:
            segments.append(int(index))
        else:
            segments.append(quoted if quoted is not None else name)
        position = match.end()
    if not segments or not isinstance(segments[0], str):
        raise CommandError(f"invalid config key path {path!r}")
    return segments


def typed_value(value: str) -> Any:
    """What `pulumi config set --path` stores for a plain value (adjustObjectValue)."""
    if value in ("true", "false"):
        return value == "true"
    if len(value) > 1 and value[0] == "0":
        return value
    if re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    return value


def _full_key(key: str) -> str:
    return key if ":" in key else f"{PROJECT}:{key}"


def apply(document: dict[str, Any], argv: list[str]) -> str:
    """Apply one `pulumi config set|rm` command to a parsed stack file; return its stack."""
    if argv[:2] not in (["pulumi", "config"],) or len(argv) < 3 or argv[2] not in ("set", "rm"):
        raise CommandError(f"not a `pulumi config set|rm` command: {shlex.join(argv)}")
    verb, rest = argv[2], argv[3:]
    path_mode, stack, positional = False, None, []
    index = 0
    while index < len(rest):
        arg = rest[index]
        if arg == "--path":
            path_mode = True
        elif arg in ("-s", "--stack"):
            index += 1
            stack = rest[index]
        elif arg.startswith("-"):
            raise CommandError(f"flag {arg} is not modelled: {shlex.join(argv)}")
        else:
            positional.append(arg)
        index += 1
    expected = 2 if verb == "set" else 1
    if len(positional) != expected or stack is None:
        raise CommandError(
            f"expected key{' and value' * (verb == 'set')} and -s: {shlex.join(argv)}"
        )
    config = document.setdefault("config", {})
    key = positional[0]
    if not path_mode:
        if verb == "set":
            config[_full_key(key)] = positional[1]
        else:
            config.pop(_full_key(key), None)
        return stack
    first, *rest_path = parse_path(key)
    assert isinstance(first, str)
    full = _full_key(first)
    if not rest_path:
        if verb == "set":
            config[full] = typed_value(positional[1])
        else:
            config.pop(full, None)
        return stack
    node = config.setdefault(full, {})
    for segment in rest_path[:-1]:
        if isinstance(node, list):
            node = node[int(segment)]
            continue
        if not isinstance(node, dict):
            raise CommandError(f"{key}: {segment!r} is inside a value that is not a map")
        node = node.setdefault(segment, {})
    last = rest_path[-1]
    if verb == "set":
        node[last] = typed_value(positional[1])
    elif isinstance(node, dict):
        node.pop(last, None)
    return stack


def apply_to_project(project: Path, command: str) -> Path:
    """Apply a command line to `Pulumi.<stack>.yaml` in `project`; return the file written."""
    argv = shlex.split(command)
    probe: dict[str, Any] = {"config": {}}
    stack = apply(probe, argv)
    path = project / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    apply(document, argv)
    path.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
    return path
