"""`parse_config`: raw `ml-mesh:*` config of one stack in, a StackConfig or one ConfigError out."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from mesh.config.errors import ConfigError, ConfigPathError, dotted_path
from mesh.config.introspection import fields_of
from mesh.config.stack import StackConfig


def _describe(error: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    loc = tuple(p for p in error["loc"] if p not in ("function-after", "[key]"))
    kind = error["type"]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ConfigPathError):
        return loc + ctx_error.path, ctx_error.message
    if kind == "extra_forbidden":
        allowed = fields_of(loc[:-1])
        hint = f"; valid keys here: {', '.join(allowed)}" if allowed else ""
        return loc, f"unknown setting{hint}"
    if kind == "missing":
        return loc, "is required but missing"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return loc, message


def parse_config(raw: dict[str, Any], stack: str) -> StackConfig:
    """Validate the `ml-mesh:*` config of one stack, or raise one ConfigError."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        loc, message = _describe(errors[0])
        raise ConfigError(stack, dotted_path(loc), message, more=len(errors) - 1) from None
