"""Keeping secret config values secret in everything built from them.

Builders are plain functions and know nothing of secrets. Instead, after building, every string
in an object that equals a secret config value is replaced: by a Pulumi secret in the program,
by a placeholder in offline render. Only fields marked secret-capable in `mesh.config` may hold
secrets, so a secret never lands in a name, label or host, where Pulumi could not hide it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mesh.config import (
    ConfigError,
    StackConfig,
    dotted_path,
    secret_capable_paths,
    value_at,
)

SECRET_REFUSED = (
    "cannot be a secret: it names resources, labels or hosts, which Pulumi cannot keep "
    "secret (secrets are allowed in models.<m>.roleArn and models.<m>.custom.env values)"
)


def secret_values(
    config: StackConfig, stack: str, secret_paths: Iterable[tuple[str | int, ...]]
) -> set[str]:
    """The plaintext values that must stay secret.

    `secret_paths` may name a leaf (offline render knows exactly which values were `secure:`) or
    a whole top-level key (the Pulumi engine only says which keys hold a secret somewhere): a
    leaf must be secret-capable; a key covers the secret-capable values beneath it.
    """
    paths = list(secret_paths)
    found: set[str] = set()
    if not paths:  # nothing is secret: no need to walk the config for where secrets may be
        return found
    capable = secret_capable_paths(config)
    for path in paths:
        covered = [p for p in capable if p[: len(path)] == path]
        if not covered:
            raise ConfigError(stack, dotted_path(path), SECRET_REFUSED)
        found.update(str(value_at(config, p)) for p in covered)
    return found


def replace_secrets(obj: Any, secrets: set[str], replace: Callable[[str], Any]) -> Any:
    """A copy of `obj` in which every string equal to a secret is `replace(string)`."""
    if not secrets:
        return obj
    if isinstance(obj, dict):
        return {k: replace_secrets(v, secrets, replace) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_secrets(v, secrets, replace) for v in obj]
    if isinstance(obj, str) and obj in secrets:
        return replace(obj)
    return obj
