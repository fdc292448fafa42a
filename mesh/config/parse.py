"""`parse_config`: raw `ml-mesh:*` config of one stack in, a StackConfig or one ConfigError out.

The ConfigError holds every problem pydantic finds in one pass, so a user fixes a stack file in
one round instead of one error per `pulumi preview`. Unknown keys come first (a misspelt key is
usually the cause of the other problems), each with a "did you mean" when a valid key is close;
a required setting reported missing because its key is misspelt is not reported again.

Cross-field rules (the models' `model_validator(mode="after")`) run only once every field of
their model validated, as pydantic runs them; a stack with field errors can therefore show
more problems (those rules) after the fields are fixed. That is the price of a model whose
rules may rely on typed fields, and it is fine: each round still lists all that is known.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from mesh.config.errors import ConfigError, ConfigPathError, Problem, dotted_path
from mesh.config.introspection import fields_of
from mesh.config.stack import StackConfig

PROJECT = "ml-mesh"  # the `name:` of Pulumi.yaml, and so the namespace of every key we read
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
# How close (difflib ratio, 0..1) a key must be to a valid one to be suggested for it.
_KEY_CUTOFF = 0.6
_NAMESPACE_CUTOFF = 0.8


def is_misspelt_project(namespace: str) -> bool:
    """Whether a config namespace looks like a misspelling of the project's (`mlmesh`,
    `ml_mesh`, `ML-Mesh`, `ml-mseh`, `mesh`), not another package's (`aws`, `kubernetes`,
    `pulumi`): Pulumi passes those keys to the program, which would silently ignore them."""
    if namespace == PROJECT or not namespace:
        return False
    folded, project = _NOT_ALNUM.sub("", namespace.lower()), _NOT_ALNUM.sub("", PROJECT)
    return difflib.SequenceMatcher(None, folded, project).ratio() >= _NAMESPACE_CUTOFF


def project_keys(config: Mapping[Any, Any]) -> dict[str, Any]:
    """The `ml-mesh:*` keys of a stack's config (and keys without namespace, which Pulumi
    reads as the project's), without the prefix. A key whose namespace is a misspelling of the
    project's is kept whole (`mlmesh:gateway`), so that `parse_config` names it."""
    raw: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).rpartition(":")
        if namespace == f"{PROJECT}:config":
            # `<namespace>:config:<name>`: Pulumi's older key form, still read as
            # `<namespace>:<name>` (pulumi/pulumi sdk/go/common/resource/config/key.go,
            # ParseKey: "compat with an old requirement that every config value be in the
            # config module"), so the program gets it; dropping it here would hide it.
            namespace = PROJECT
            if name in raw:
                raise ValueError(
                    f"`{key}` and `{PROJECT}:{name}` are the same key to Pulumi, which keeps "
                    "one of them at random: keep one"
                )
        elif namespace == PROJECT and name in raw:
            raise ValueError(
                f"`{key}` and `{PROJECT}:config:{name}` are the same key to Pulumi, which keeps "
                "one of them at random: keep one"
            )
        if namespace in ("", PROJECT):
            raw[name] = engine_value(name, value)
        elif is_misspelt_project(namespace):
            raw[str(key)] = value
    return raw


def engine_value(name: str, value: Any) -> Any:
    """A top-level value of a stack's config as the program reads it, so every offline command
    reads a stack file exactly as `pulumi up` does (`mesh.program.read_config` calls this too).

    The engine hands the program every top-level value as text: Pulumi's config `Value`
    (pulumi/pulumi sdk/go/common/resource/config/value.go, `UnmarshalYAML` -> `unmarshalValue`)
    first unmarshals a value as a string, and keeps only mappings and lists as JSON. So
    `maxWeightStep: "40"` (what `pulumi config set maxWeightStep 40` writes, without `--path`)
    reaches the program as the text `40`, as `maxWeightStep: 40` does, and both must read as
    the number 40; `protected: "true"` as true. Text decodes as JSON except for fields that are
    text (a namespace `123` stays `"123"`). A YAML number or boolean for a text field is left
    as it is, to be refused with "quote it": its text as written (`007`) is lost to the loader.
    """
    if not isinstance(value, str) or _expects_text(name):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _expects_text(name: str) -> bool:
    field = StackConfig.model_fields.get(_snake(name))
    annotation = field.annotation if field is not None else None
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation is str


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _closest(key: str, valid: list[str]) -> str | None:
    """The valid key `key` most likely misspells (case-insensitive), if one is close."""
    folded = {v.lower(): v for v in valid}
    match = difflib.get_close_matches(key.lower(), list(folded), n=1, cutoff=_KEY_CUTOFF)
    return folded[match[0]] if match else None


def _unknown_key(loc: tuple[str | int, ...]) -> tuple[str, str, str | None]:
    """(path, message, the valid key it likely stands for) of a key the schema lacks."""
    key, parent = str(loc[-1]), loc[:-1]
    valid = fields_of(parent) or []
    namespace, colon, name = key.rpartition(":")
    if not parent and colon and is_misspelt_project(namespace):
        meant = name if name in valid else _closest(name, valid)
        hint = f"; did you mean `{PROJECT}:{meant}`?" if meant else ""
        return "", f"key `{key}` is not read: the project is `{PROJECT}`{hint}", meant
    meant = _closest(key, valid)
    hint = f"; did you mean `{meant}`?" if meant else ""
    listed = f" (valid keys here: {', '.join(valid)})" if valid else ""
    return dotted_path(loc), f"unknown setting{hint}{listed}", meant


def _describe(error: dict[str, Any]) -> tuple[tuple[str | int, ...], str]:
    loc = tuple(p for p in error["loc"] if p not in ("function-after", "[key]"))
    kind = error["type"]
    ctx_error = (error.get("ctx") or {}).get("error")
    if isinstance(ctx_error, ConfigPathError):
        return loc + ctx_error.path, ctx_error.message
    if kind == "missing":
        return loc, "is required but missing"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif "input" in error and not isinstance(error["input"], (dict, list)):
        message = f"{message} (got {error['input']!r})"
    return loc, message


def _sort_key(loc: tuple[str | int, ...]) -> tuple[tuple[int, int, str], ...]:
    """Config paths in order: keys alphabetically, list items by index."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in loc)


def problems(errors: list[dict[str, Any]]) -> list[Problem]:
    """Every problem of a pydantic validation, unknown keys first, each group by path; a
    missing setting whose misspelt key was found is left out (the unknown key says it)."""
    unknown: list[tuple[tuple, Problem]] = []
    meant: set[tuple[str | int, ...]] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(error["loc"])
            path, message, valid_key = _unknown_key(loc)
            unknown.append((loc, Problem(path, message)))
            if valid_key is not None:
                meant.add((*loc[:-1], valid_key))
    other: list[tuple[tuple, Problem]] = []
    for error in errors:
        if error["type"] == "extra_forbidden":
            continue
        loc, message = _describe(error)
        if error["type"] == "missing" and loc in meant:
            continue
        other.append((loc, Problem(dotted_path(loc), message)))
    found: list[Problem] = []
    for group in (unknown, other):
        for _, problem in sorted(group, key=lambda item: _sort_key(item[0])):
            if problem not in found:  # a union reports one mistake once per member
                found.append(problem)
    return found


def parse_config(raw: dict[str, Any], stack: str) -> StackConfig:
    """Validate the `ml-mesh:*` config of one stack, or raise one ConfigError holding every
    problem found (see the module docstring for what "every" means with cross-field rules)."""
    try:
        return StackConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError.of(stack, problems(exc.errors(include_url=False))) from None
