"""The protections of a stack as the program applies them, and which of them a change loosens.

`mesh diff` holds a change to the stricter of the base's and the head's protections, and a
change that loosens one is itself gated (`policy-change`). Both sides are read as the program
reads them: `StackConfig` and its properties that apply the protected defaults
(`mtls_mode`, `authorization_enabled`, ...), defaults included, so `protected: "true"` (what
`pulumi config set` writes without `--path`) counts as true and an unset `maxWeightStep` as 25.

A base whose config as a whole does not parse with this code (an older schema) is read key by
key with the same field types; a key that does not read counts as its strictest value (and is
named in the report), and so does every key of a base file that does not read at all (a YAML
error, a duplicate key, not a mapping): an unreadable base never loosens a gate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from mesh.config import StackConfig
from mesh.config.security import Security
from mesh.config.stack import Images

# Effective mutual TLS from weakest to strictest: None leaves the mesh-wide setting (Istio's
# default is PERMISSIVE), PERMISSIVE accepts plaintext, STRICT accepts mTLS only.
MTLS_ORDER: tuple[str | None, ...] = (None, "PERMISSIVE", "STRICT")


@dataclass(frozen=True)
class Protections:
    """What a stack enforces, each value effective (the protected defaults applied)."""

    protected: bool
    max_weight_step: int
    require_digests: bool
    mtls: str | None
    authorization: bool
    restrict_egress: bool
    network_policy: bool
    unreadable: tuple[str, ...] = ()  # keys read as their strictest value

    def stricter(self, other: Protections) -> Protections:
        """Each setting at the stricter of the two."""
        return Protections(
            protected=self.protected or other.protected,
            max_weight_step=min(self.max_weight_step, other.max_weight_step),
            require_digests=self.require_digests or other.require_digests,
            mtls=max(self.mtls, other.mtls, key=MTLS_ORDER.index),
            authorization=self.authorization or other.authorization,
            restrict_egress=self.restrict_egress or other.restrict_egress,
            network_policy=self.network_policy or other.network_policy,
            unreadable=tuple(sorted({*self.unreadable, *other.unreadable})),
        )


def of_config(config: StackConfig, unreadable: tuple[str, ...] = ()) -> Protections:
    """The protections a parsed stack config applies: exactly what the program builds from."""
    return Protections(
        protected=config.protected,
        max_weight_step=config.max_weight_step,
        require_digests=config.images.require_digests,
        mtls=config.mtls_mode(),
        authorization=config.authorization_enabled(),
        restrict_egress=config.egress_restricted(),
        network_policy=config.network_policy_enabled(),
        unreadable=unreadable,
    )


# (config path, model, field, strictest value): the keys a protection is read from.
_KEYS: tuple[tuple[str, type[BaseModel], str, Any], ...] = (
    ("protected", StackConfig, "protected", True),
    ("maxWeightStep", StackConfig, "max_weight_step", 1),
    ("images.requireDigests", Images, "require_digests", True),
    ("security.mtls", Security, "mtls", "STRICT"),
    ("security.authorization", Security, "authorization", True),
    ("security.restrictEgress", Security, "restrict_egress", True),
    ("security.networkPolicy", Security, "network_policy", True),
)


def _field_type(model: type[BaseModel], field: str) -> TypeAdapter:
    """The field's type with its constraints (`Flag`, strict int 1..100, ...)."""
    info = model.model_fields[field]
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[info.annotation, *info.metadata])


def _lookup(raw: Mapping[str, Any], path: str) -> tuple[bool, Any]:
    """(present, value) of a dotted path; a non-mapping on the way is present and unreadable."""
    node: Any = raw
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return True, _UNREADABLE
        if part not in node:
            return False, None
        node = node[part]
    return True, node


_UNREADABLE = object()


def of_raw(raw: Mapping[str, Any]) -> Protections:
    """The protections of a stack file this code cannot parse as a whole, key by key."""
    values: dict[str, Any] = {}
    unreadable = []
    for path, model, field, strictest in _KEYS:
        present, value = _lookup(raw, path)
        if not present:
            values[field] = model.model_fields[field].get_default(call_default_factory=True)
            continue
        try:
            if value is _UNREADABLE:
                raise ValueError(value)
            values[field] = _field_type(model, field).validate_python(value)
        except (ValidationError, ValueError):
            values[field] = strictest
            unreadable.append(path)
    # Built without validation only to reuse StackConfig's own properties for the defaults.
    config = StackConfig.model_construct(
        protected=values["protected"],
        max_weight_step=values["max_weight_step"],
        images=Images.model_construct(require_digests=values["require_digests"]),
        security=Security.model_construct(
            mtls=values["mtls"],
            authorization=values["authorization"],
            restrict_egress=values["restrict_egress"],
            network_policy=values["network_policy"],
        ),
    )
    return of_config(config, tuple(unreadable))


def strictest() -> Protections:
    """The protections of a stack file that does not read at all (a YAML error, a duplicate
    key, a list): every key at its strictest, every key named unreadable."""
    values = {field: value for _, _, field, value in _KEYS}
    return Protections(
        protected=values["protected"],
        max_weight_step=values["max_weight_step"],
        require_digests=values["require_digests"],
        mtls=values["mtls"],
        authorization=values["authorization"],
        restrict_egress=values["restrict_egress"],
        network_policy=values["network_policy"],
        unreadable=tuple(path for path, *_ in _KEYS),
    )


def of_side(config: StackConfig | None, raw: Mapping[str, Any] | None) -> Protections:
    """A side's protections: from its parsed config, else from its stack file key by key, else
    (`raw` None: the file does not read) the strictest."""
    if config is not None:
        return of_config(config)
    return strictest() if raw is None else of_raw(raw)


@dataclass(frozen=True)
class Loosened:
    """One protection the head weakens: the config path, before and after (as text)."""

    path: str
    before: str
    after: str


def _text(value: Any) -> str:
    if value is None:
        return "unset (the mesh-wide setting)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def loosened(base: Protections, head: Protections) -> list[Loosened]:
    """Every protection of the base that the head weakens; tightening is never listed."""
    found = []
    flags = (
        ("protected", base.protected, head.protected),
        ("images.requireDigests", base.require_digests, head.require_digests),
        ("security.authorization", base.authorization, head.authorization),
        ("security.restrictEgress", base.restrict_egress, head.restrict_egress),
        ("security.networkPolicy", base.network_policy, head.network_policy),
    )
    for path, before, after in flags:
        if before and not after:
            found.append(Loosened(path, _text(before), _text(after)))
    if head.max_weight_step > base.max_weight_step:
        found.append(
            Loosened("maxWeightStep", str(base.max_weight_step), str(head.max_weight_step))
        )
    if MTLS_ORDER.index(head.mtls) < MTLS_ORDER.index(base.mtls):
        found.append(Loosened("security.mtls", _text(base.mtls), _text(head.mtls)))
    order = [path for path, *_ in _KEYS]
    return sorted(found, key=lambda change: order.index(change.path))
