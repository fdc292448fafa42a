"""Reading `Pulumi.<stack>.yaml` without the Pulumi CLI, for offline render and checks.

Pulumi keeps encrypted values as `{secure: v1:...}`; they cannot be decrypted here, so each is
replaced by a placeholder that passes its field's format check and is masked in the output.

Stack files are read as Pulumi reads them (go-yaml v3, through `encoding.YAML` in Pulumi's
sdk/go/common/encoding/marshal.go), not as PyYAML would by default: a key given twice is an
error (go-yaml v3: "mapping key ... already defined"; PyYAML silently keeps the last), and only
true/false are booleans (YAML 1.2; PyYAML's YAML 1.1 also reads yes/no/on/off as booleans, so an
env value `yes` would render as "true" offline and be "yes" under `pulumi up`). Every reader of a
stack file in ml-mesh goes through `read_stack_document`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh.config import (
    PLACEHOLDER_ROLE_ARN,
    PROJECT,
    SECRET_PLACEHOLDER,
    ConfigError,
    Problem,
    StackConfig,
    dotted_path,
    is_secret_capable,
    parse_config,
    project_keys,
)
from mesh.secrets import SECRET_REFUSED, secret_values

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STACK = "dev"
__all__ = ["DEFAULT_STACK", "PROJECT", "PROJECT_DIR", "LoadedStack", "load_stack"]


@dataclass(frozen=True)
class LoadedStack:
    name: str
    config: StackConfig
    secrets: set[str]
    # `ml-mesh:*` as the file gives them (secure values still `{secure: ...}`), for readers of
    # the raw settings (`mesh diff`'s policy), so that nothing reads the file twice.
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def stack_file(stack_or_path: str) -> tuple[str, Path]:
    """A stack name (`dev`) means `Pulumi.dev.yaml` in the project directory, wherever the
    command runs from; anything else (`examples/Pulumi.x.yaml`, a file that exists) is a path,
    relative to the current directory as paths on a command line are."""
    path = Path(stack_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
        return name, path
    return stack_or_path, PROJECT_DIR / f"Pulumi.{stack_or_path}.yaml"


def known_stacks(project_dir: Path = PROJECT_DIR) -> tuple[list[str], list[Path]]:
    """The stacks of the project (`Pulumi.<name>.yaml` beside Pulumi.yaml) and the example
    stack files (examples/, given by path)."""
    names = sorted(
        p.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
        for p in project_dir.glob("Pulumi.*.y*ml")
        if p.suffix in (".yaml", ".yml")
    )
    return names, sorted((project_dir / "examples").glob("Pulumi.*.yaml"))


def _shown(path: Path) -> str:
    """A path as a user can paste it here: relative to the current directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def no_such_stack(name: str, path: Path, by_name: bool) -> ConfigError:
    """The refusal for a stack that has no file: where it looked and what exists instead."""
    if not by_name:
        return ConfigError.of(name, [Problem("", "", f"ml-mesh: no stack file {_shown(path)}")])
    names, examples = known_stacks()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean `{close[0]}`?" if close else ""
    listed = ", ".join(names) or "none"
    text = (
        f"ml-mesh: no stack '{name}': no stack file Pulumi.{name}.yaml in {PROJECT_DIR}{hint}\n"
        f"  stacks there: {listed}"
    )
    if examples:
        text += f"\n  example stack files (give the path): {', '.join(map(_shown, examples))}"
    return ConfigError.of(name, [Problem("", "", text)])


# --- reading a stack file as Pulumi does ------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
# YAML 1.2 core schema booleans, what go-yaml v3 reads as bool into an untyped value.
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping gives the same key twice."""


class _StackFileConstructor:
    """Mapping construction that refuses a key given twice (at any depth), naming both lines.
    Merge keys (`<<: *base`) may be overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: PyYAML refuses it with its own message
                    continue
                if first is not key_node.start_mark:
                    raise DuplicateKeyError(
                        None,
                        None,
                        f"duplicate key `{key}` (first at line {first.line + 1}): keep one; "
                        "Pulumi refuses a key given twice, PyYAML would silently keep the last",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)  # type: ignore[misc]


def _yaml12_resolvers(base: type) -> dict[str, list]:
    resolvers = {
        first: [(tag, regexp) for tag, regexp in entries if tag != _BOOL]
        for first, entries in base.yaml_implicit_resolvers.items()
    }
    for first in "tTfF":
        resolvers.setdefault(first, []).insert(0, (_BOOL, _YAML12_BOOL))
    return resolvers


class StackFileLoader(_StackFileConstructor, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, read the way Pulumi reads a stack file."""

    yaml_implicit_resolvers = _yaml12_resolvers(yaml.SafeLoader)


# libyaml parses faster, but its messages are vaguer ("found undefined alias" without the name)
# and a few columns differ, so a file it refuses is parsed again by the pure-Python loader for
# the message. Construction (duplicate keys, booleans) is the same Python code in both.
_CSafeLoader = getattr(yaml, "CSafeLoader", None)
FastStackFileLoader: type = (
    type(
        "FastStackFileLoader",
        (_StackFileConstructor, _CSafeLoader),
        {"yaml_implicit_resolvers": _yaml12_resolvers(_CSafeLoader)},
    )
    if _CSafeLoader is not None
    else StackFileLoader
)


def yaml_problem(shown: str, text: str, error: yaml.YAMLError, stack: str) -> str:
    """`file:line:column: message (stack 'x')`, then the offending line and a caret under the
    column, as compilers report, so editors and CI annotations can jump to it."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).replace("\n", " ")
    context, context_mark = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and context_mark is not None and mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    elif context:
        problem += f" ({context})"
    if mark is None:
        return f"{shown}: {problem} (stack '{stack}')"
    lines = text.splitlines()
    head = f"{shown}:{mark.line + 1}:{mark.column + 1}: {problem} (stack '{stack}')"
    if mark.line >= len(lines):
        return f"{head}\n  (at the end of the file)"
    number = str(mark.line + 1)
    source = lines[mark.line].replace("\t", " ")
    return f"{head}\n  {number} | {source}\n  {' ' * len(number)} | {' ' * mark.column}^"


def read_stack_document(path: Path, stack: str) -> Any:
    """The YAML document of a stack file, or a ConfigError: `file:line:column: message` and
    the offending line for a syntax error or a duplicate key."""
    text = path.read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=FastStackFileLoader)
    except yaml.YAMLError as exc:
        error = exc
    if FastStackFileLoader is not StackFileLoader:
        try:
            yaml.load(text, Loader=StackFileLoader)
        except yaml.YAMLError as exc:
            error = exc
    problem = yaml_problem(_shown(path), text, error, stack)
    raise ConfigError.of(stack, [Problem("", str(error), problem)]) from None


def raw_project_config(document: Any) -> dict[str, Any]:
    """The `ml-mesh:*` keys of a stack file, without the namespace prefix (see
    `mesh.config.project_keys`: a misspelt project namespace is kept, to be named)."""
    if document is not None and not isinstance(document, dict):
        raise ValueError(
            f"the file is a YAML {type(document).__name__}; a stack file is a mapping with a "
            "`config:` key (`config:` then `ml-mesh:<key>: <value>` lines)"
        )
    config = (document or {}).get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("'config' must be a mapping")
    return project_keys(config)


def unwrap_secure(node: Any, path: tuple = ()) -> tuple[Any, list[tuple]]:
    """Replace `{secure: ...}` leaves by placeholders; return the new tree and their paths."""
    if isinstance(node, dict) and set(node) == {"secure"}:
        placeholder = PLACEHOLDER_ROLE_ARN if path[-1:] == ("roleArn",) else SECRET_PLACEHOLDER
        return placeholder, [path]
    found: list[tuple] = []
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            out[key], sub = unwrap_secure(value, (*path, key))
            found += sub
        return out, found
    if isinstance(node, list):
        items = []
        for index, value in enumerate(node):
            item, sub = unwrap_secure(value, (*path, index))
            items.append(item)
            found += sub
        return items, found
    return node, found


def load_stack(stack_or_path: str = DEFAULT_STACK) -> LoadedStack:
    name, path = stack_file(stack_or_path)
    if not path.is_file():
        raise no_such_stack(name, path, by_name=path.parent == PROJECT_DIR)
    try:
        raw = raw_project_config(read_stack_document(path, name))
    except (ValueError, AttributeError, OSError) as exc:
        problem = str(exc).replace("\n", " ")
        raise ConfigError(
            name, "", f"{_shown(path)} is not a valid stack file: {problem}"
        ) from None
    unwrapped, secure_paths = unwrap_secure(raw)
    for secure in secure_paths:
        if not is_secret_capable(secure):
            raise ConfigError(name, dotted_path(secure), SECRET_REFUSED)
    config = parse_config(unwrapped, name)
    secrets = secret_values(config, name, secure_paths)
    return LoadedStack(name, config, secrets, raw)
