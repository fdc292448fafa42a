"""Reading `Pulumi.<stack>.yaml` without the Pulumi CLI, for offline render and checks.

Pulumi keeps encrypted values as `{secure: v1:...}`; they cannot be decrypted here, so each is
replaced by a placeholder that passes its field's format check and is masked in the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mesh.config import (
    PLACEHOLDER_ROLE_ARN,
    SECRET_PLACEHOLDER,
    ConfigError,
    StackConfig,
    dotted_path,
    is_secret_capable,
    parse_config,
)
from mesh.secrets import SECRET_REFUSED, secret_values

PROJECT = "ml-mesh"
PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_STACK = "dev"


@dataclass(frozen=True)
class LoadedStack:
    name: str
    config: StackConfig
    secrets: set[str]


def stack_file(stack_or_path: str) -> tuple[str, Path]:
    """A stack name (`dev`) means `Pulumi.dev.yaml` in the project; anything else is a path."""
    path = Path(stack_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        name = path.name.removeprefix("Pulumi.").rsplit(".", 1)[0]
        return name, path
    return stack_or_path, PROJECT_DIR / f"Pulumi.{stack_or_path}.yaml"


def raw_project_config(document: Any) -> dict[str, Any]:
    """The `ml-mesh:*` keys of a stack file, without the namespace prefix."""
    config = (document or {}).get("config") or {}
    if not isinstance(config, dict):
        raise ValueError("'config' must be a mapping")
    raw: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).rpartition(":")
        if namespace in ("", PROJECT):
            raw[name] = value
    return raw


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
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        raw = raw_project_config(document)
    except FileNotFoundError:
        raise ConfigError(name, "", f"no stack file {path}") from None
    except (yaml.YAMLError, ValueError, AttributeError, UnicodeDecodeError) as exc:
        problem = str(exc).replace("\n", " ")
        raise ConfigError(name, "", f"{path} is not a valid stack file: {problem}") from None
    raw, secure_paths = unwrap_secure(raw)
    for secure in secure_paths:
        if not is_secret_capable(secure):
            raise ConfigError(name, dotted_path(secure), SECRET_REFUSED)
    config = parse_config(raw, name)
    secrets = secret_values(config, name, secure_paths)
    return LoadedStack(name, config, secrets)
