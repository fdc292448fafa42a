"""Walks of the schema and of a validated config by config path.

They serve error messages (the keys valid at a path) and secrets (which values may be Pulumi
secrets, see SECRET_CAPABLE), so both follow the models instead of keeping their own lists.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from mesh.config.formats import SECRET_CAPABLE
from mesh.config.stack import StackConfig


def _schema_at(loc: tuple[str | int, ...]) -> Any:
    """The type annotation the schema has at `loc` (None where the schema has no such key)."""
    node: Any = StackConfig
    for part in loc:
        if getattr(node, "__origin__", None) is dict:
            node = node.__args__[1]  # `part` is a key of a map (a model, a version, an env var)
            continue
        node = _unwrap(node)
        if not (isinstance(node, type) and issubclass(node, BaseModel)):
            return None
        field = next((f for f in node.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        node = _unwrap(field.annotation)
    return node


def fields_of(loc: tuple[str | int, ...]) -> list[str] | None:
    """The config keys allowed at `loc`, for 'unknown setting' messages."""
    node = _unwrap(_schema_at(loc))
    if isinstance(node, type) and issubclass(node, BaseModel):
        return [f.alias or n for n, f in node.model_fields.items()]
    return None


def is_secret_capable(loc: tuple[str | int, ...]) -> bool:
    """Whether the value at `loc` may be a Pulumi secret (see SECRET_CAPABLE)."""
    return _is_marked(_schema_at(loc))


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    args = getattr(annotation, "__args__", ())
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def secret_capable_paths(config: StackConfig) -> list[tuple[str | int, ...]]:
    """Paths of the set values whose fields may hold secrets (see SECRET_CAPABLE)."""
    found: list[tuple[str | int, ...]] = []

    def walk(node: Any, path: tuple[str | int, ...]) -> None:
        if isinstance(node, BaseModel):
            for name, field in type(node).model_fields.items():
                value, key = getattr(node, name), field.alias or name
                kind = _secret_capable_kind(field.annotation)
                if value is None:
                    continue
                if kind == "value":
                    found.append((*path, key))
                elif kind == "map-values":
                    found.extend((*path, key, k) for k in value)
                else:
                    walk(value, (*path, key))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, key))

    walk(config, ())
    return found


def _is_marked(annotation: Any) -> bool:
    return any(
        isinstance(getattr(meta, "json_schema_extra", None), dict)
        and meta.json_schema_extra.get(SECRET_CAPABLE)
        for meta in getattr(annotation, "__metadata__", ())
    )


def _secret_capable_kind(annotation: Any) -> str | None:
    """'value' for a secret-capable field, 'map-values' for a map of such values."""
    annotation = _unwrap(annotation)
    if _is_marked(annotation):
        return "value"
    if getattr(annotation, "__origin__", None) is dict and _is_marked(annotation.__args__[1]):
        return "map-values"
    return None


def value_at(config: StackConfig, path: tuple[str | int, ...]) -> Any:
    node: Any = config
    for part in path:
        if isinstance(node, BaseModel):
            name = next(n for n, f in type(node).model_fields.items() if (f.alias or n) == part)
            node = getattr(node, name)
        else:
            node = node[part]
    return node
