"""Would the cluster accept this object? Offline validation against the real schemas.

Used by the conformance tests, the example tests and the property tests. Each object is checked
the way the API server checks it on `kubectl apply --validate=strict`:

- Kubernetes kinds: the Kubernetes OpenAPI schemas in strict mode (unknown fields rejected), from
  the `kubernetes-validate` package, for KUBERNETES_VERSION;
- Istio kinds: `../shared/istio/schemas-strict/<group>/<version>/<Kind>.json`, plus every CEL
  rule of `../shared/istio/cel-rules.json` that applies to the kind, evaluated with `cel-python`;
- Flagger kinds: `../shared/flagger/schemas-strict/<Kind>.json` and the CEL rules in it;
- every kind: the metadata formats the API server enforces and no JSON Schema expresses (names,
  label keys and values, annotation keys).

A kind with no schema anywhere is a problem ("not validated"), never a silent pass; a test may
accept one by name in SCHEMALESS_KINDS, with the reason.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import celpy
import jsonschema
import kubernetes_validate
from celpy import celtypes

from mesh.config import KUBERNETES_VERSIONS
from tests.conftest import shared_path

# The oldest Kubernetes ml-mesh supports (docs/platform.md, "Supported platforms"). A field that only a newer
# release knows would be rejected there, so objects are validated against this one.
KUBERNETES_VERSION = KUBERNETES_VERSIONS[0]

# Kinds that have no schema in kubernetes-validate or ../shared, accepted by name with the reason.
SCHEMALESS_KINDS: dict[str, str] = {
    "monitoring.coreos.com/PrometheusRule": (
        "the prometheus-operator CRD schema is not in ../shared; its rule expressions are "
        "checked by the tests of the kind's builder"
    ),
}

ISTIO_GROUP_SUFFIX = ".istio.io"
FLAGGER_GROUP = "flagger.app"
GATEWAY_API_GROUP = "gateway.networking.k8s.io"


def problems(obj: dict[str, Any], kubernetes_version: str = KUBERNETES_VERSION) -> list[str]:
    """Everything the API server (with the CRDs' schemas and CEL rules) would reject in `obj`,
    Kubernetes kinds checked against `kubernetes_version` (default the oldest supported)."""
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    group, _, version = api_version.rpartition("/")
    if group.endswith(ISTIO_GROUP_SUFFIX):
        path = shared_path("istio") / "schemas-strict" / group / version / f"{kind}.json"
        found = _crd_problems(obj, path, _istio_cel_rules, "Istio 1.30")
    elif group == FLAGGER_GROUP:
        path = shared_path("flagger") / "schemas-strict" / f"{kind}.json"
        found = _crd_problems(obj, path, _schema_cel_rules, "Flagger 1.44")
    elif group == GATEWAY_API_GROUP:
        # The standard channel: what every cluster with Gateway API serves.
        path = shared_path("gateway-api", "schemas-strict", "standard") / group / version
        path = path / f"{kind}.json"
        found = _crd_problems(obj, path, _gateway_api_cel_rules, "Gateway API v1.6.1")
    else:
        found = _kubernetes_problems(obj, kubernetes_version)
    found += metadata_problems(obj)
    return [f"{_ref(obj)}: {problem}" for problem in found]


def _crd_problems(
    obj: dict[str, Any], path: Path, rules: Callable[[Path], tuple[CelRule, ...]], served_by: str
) -> list[str]:
    if not path.exists():
        return [f"{served_by} serves no such kind and version (no {path})"]
    return _schema_problems(obj, path) + _cel_problems(obj, rules(path), _load(path))


def _ref(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    name = meta.get("name", "?")
    if meta.get("namespace"):
        name = f"{meta['namespace']}/{name}"
    return f"{obj.get('apiVersion')} {obj.get('kind')} {name}"


def _where(path: Iterator[Any] | list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out or "."


# --- Kubernetes kinds ------------------------------------------------------------------------


def _kubernetes_problems(obj: dict[str, Any], version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_where(exc.path)}: {exc.message} (Kubernetes {exc.version}, strict)"]
    except kubernetes_validate.SchemaNotFoundError:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        if f"{group}/{obj.get('kind')}" in SCHEMALESS_KINDS:
            return []
        return [
            f"not validated: no schema for this kind in Kubernetes {version} "
            "or ../shared (add one, or list it in SCHEMALESS_KINDS with the reason)"
        ]
    return []


# --- CRD kinds: JSON Schema --------------------------------------------------------------------


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@cache
def _validator(path: Path) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_load(path))


def _schema_problems(obj: dict[str, Any], path: Path) -> list[str]:
    errors = sorted(_validator(path).iter_errors(obj), key=lambda e: list(map(str, e.path)))
    return [f"{_where(e.path)}: {e.message} ({path.name}, strict)" for e in errors]


# --- CRD kinds: CEL rules ----------------------------------------------------------------------


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` rule: where it applies (`.spec.http[].timeout`, with `[]`
    for list items and `{}` for map values) and the CEL the API server evaluates there."""

    path: str
    rule: str
    message: str

    def steps(self) -> list[tuple[str, str]]:
        """`.spec.http[].timeout` -> [("spec", ""), ("http", "[]"), ("timeout", "")]."""
        out = []
        for part in self.path.strip(".").split("."):
            if not part:
                continue
            suffix = part[-2:] if part.endswith(("[]", "{}")) else ""
            out.append((part.removesuffix(suffix), suffix))
        return out


def _istio_cel_rules(schema_path: Path) -> tuple[CelRule, ...]:
    """The rules of cel-rules.json for the kind and version that `schema_path` describes."""
    kind, version, group = schema_path.stem, schema_path.parent.name, schema_path.parent.parent.name
    return tuple(
        CelRule(r["path"], r["rule"], r["message"])
        for r in istio_cel_rules()
        if (r["group"], r["version"], r["kind"]) == (group, version, kind)
    )


def _gateway_api_cel_rules(schema_path: Path) -> tuple[CelRule, ...]:
    """The standard channel's rules for the kind and version that `schema_path` describes."""
    kind, version, group = schema_path.stem, schema_path.parent.name, schema_path.parent.parent.name
    rules = _load(shared_path("gateway-api", "cel-rules-standard.json"))
    return tuple(
        CelRule(r["path"], r["rule"], r["message"])
        for r in rules
        if (r["group"], r["version"], r["kind"]) == (group, version, kind)
    )


@cache
def istio_cel_rules() -> tuple[dict[str, str], ...]:
    return tuple(_load(shared_path("istio", "cel-rules.json")))


@cache
def _schema_cel_rules(schema_path: Path) -> tuple[CelRule, ...]:
    """Rules kept verbatim in a schema's `x-kubernetes-validations` (Flagger has no rule list)."""
    return tuple(schema_cel_rules(_load(schema_path)))


def schema_cel_rules(schema: dict[str, Any], path: str = "") -> Iterator[CelRule]:
    for rule in schema.get("x-kubernetes-validations", ()):
        yield CelRule(path or ".", rule["rule"], rule.get("message", rule["rule"]))
    for name, sub in (schema.get("properties") or {}).items():
        yield from schema_cel_rules(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from schema_cel_rules(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_cel_rules(schema["additionalProperties"], f"{path}{{}}")


def _cel_problems(
    obj: dict[str, Any], rules: tuple[CelRule, ...], schema: dict[str, Any]
) -> list[str]:
    found = []
    for rule in rules:
        for where, value in _nodes_at(obj, rule, schema):
            if value is None:
                continue
            verdict = evaluate(rule.rule, value)
            if verdict is not True:
                detail = "" if verdict is False else f"; the rule failed to evaluate: {verdict}"
                found.append(f"{where}: {rule.message} (CEL: {rule.rule}{detail})")
    return found


def _nodes_at(obj: dict[str, Any], rule: CelRule, schema: dict[str, Any]) -> list[tuple[str, Any]]:
    """The values at the rule's path in `obj` with their concrete paths (`.spec.http[0].timeout`),
    after the schema's defaults, which the API server applies before it evaluates CEL."""
    nodes: list[tuple[str, Any]] = [("", obj)]
    for name, suffix in rule.steps():
        schema = (schema.get("properties") or {}).get(name) or {}
        if suffix:
            schema = schema.get("items" if suffix == "[]" else "additionalProperties") or {}
        nxt = []
        for where, node in nodes:
            if not isinstance(node, dict) or name not in node:
                continue
            value, where = node[name], f"{where}.{name}"
            if suffix == "[]" and isinstance(value, list):
                nxt.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
            elif suffix == "{}" and isinstance(value, dict):
                nxt.extend((f"{where}[{key!r}]", item) for key, item in value.items())
            elif not suffix:
                nxt.append((where, value))
        nodes = nxt
    return [(where or ".", _with_defaults(value, schema)) for where, value in nodes]


def _with_defaults(value: Any, schema: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value
    defaults = {
        name: sub["default"]
        for name, sub in (schema.get("properties") or {}).items()
        if isinstance(sub, dict) and "default" in sub and name not in value
    }
    return {**defaults, **value} if defaults else value


def evaluate(rule: str, value: Any) -> bool | str:
    """True/False as the API server would decide, or the evaluation error (which it rejects)."""
    try:
        result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except celpy.CELEvalError as exc:
        return _eval_error(exc)
    if isinstance(result, celpy.CELEvalError):
        return _eval_error(result)
    if isinstance(result, celtypes.BoolType):
        return bool(result)
    return f"the rule returned {result!r}, not a bool"


def _eval_error(error: celpy.CELEvalError) -> str:
    """cel-python wraps a function's exception as (summary, type, args): show the cause."""
    summary, *rest = error.args or (str(error),)
    cause = rest[1] if len(rest) > 1 and rest[1] else ()
    return "; ".join(str(part) for part in (summary, *cause))


@cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=KUBERNETES_CEL_FUNCTIONS)


# Kubernetes CEL extensions (k8s.io/apiserver/pkg/cel/library and cel-go's strings ext) that
# cel-python lacks, and `duration()` with Go's time.ParseDuration syntax, which the API server
# uses (cel-python's own accepts a `d` unit Go rejects).

_GO_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_NANOS |= {"m": 60 * 10**9, "h": 3600 * 10**9}


def go_duration(text: Any) -> celtypes.DurationType:
    """`duration(string)` exactly as Go's time.ParseDuration reads it."""
    if not isinstance(text, str):
        raise TypeError(f"duration() takes a string, not {type(text).__name__}")
    rest = text.lstrip("+-")
    sign = -1 if text.startswith("-") else 1
    if rest == "0":
        return celtypes.DurationType(0)
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    nanos, position = Decimal(0), 0
    while position < len(rest):
        match = _GO_DURATION_PART.match(rest, position)
        if match is None or not (match.group(1) or match.group(2)):
            raise ValueError(f"invalid duration {text!r}")
        whole, fraction, unit = match.groups()
        try:
            number = Decimal(f"{whole or 0}.{fraction or 0}")
        except InvalidOperation:
            raise ValueError(f"invalid duration {text!r}") from None
        nanos += number * _NANOS[unit]
        position = match.end()
    total = int(nanos) * sign
    seconds, remainder = divmod(abs(total), 10**9)
    return celtypes.DurationType(seconds * (1 if total >= 0 else -1), remainder * sign)


def substring(text: Any, start: Any, end: Any = None) -> celtypes.StringType:
    """cel-go strings ext: code points [start, end); out of range is an error, not a clamp."""
    length = len(text)
    stop = length if end is None else int(end)
    if not 0 <= int(start) <= stop <= length:
        raise ValueError(f"substring({start}, {stop}) out of range for length {length}")
    return celtypes.StringType(text[int(start) : stop])


@dataclass(frozen=True)
class CelURL:
    scheme: str
    host: str
    path: str


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")


def _parse_request_uri(text: str) -> CelURL:
    """Go's url.ParseRequestURI, which the Kubernetes URL library uses: an absolute URI or an
    absolute path, no fragment handling, no control characters, a numeric port if any."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise ValueError(f"invalid URL {text!r}: control character")
    if text.startswith("/"):
        return CelURL("", "", text)
    scheme, colon, _ = text.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise ValueError(f"invalid URL {text!r}: not an absolute URI or absolute path")
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"invalid URL {text!r}: {exc}") from None
    return CelURL(scheme.lower(), parts.hostname or "", parts.path)


def url(text: Any) -> CelURL:
    return _parse_request_uri(str(text))


def is_url(text: Any) -> celtypes.BoolType:
    try:
        _parse_request_uri(str(text))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


KUBERNETES_CEL_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "duration": go_duration,
    "substring": substring,
    "url": url,
    "isURL": is_url,
    "getScheme": lambda u: celtypes.StringType(u.scheme),
    "getHostname": lambda u: celtypes.StringType(u.host),
    "getEscapedPath": lambda u: celtypes.StringType(u.path),
}

# Macros cel-python expands itself (they are not functions of the environment).
CEL_MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})


def functions_called(rule: str) -> set[str]:
    """Names of the functions and methods a rule calls, to prove each one is implemented."""
    tree = celpy.Environment().compile(rule)
    names = set()
    for node in tree.iter_subtrees():
        if node.data == "ident_arg":
            names.add(str(node.children[0]))
        elif node.data == "member_dot_arg":
            names.add(str(node.children[1]))
    return names


def known_cel_functions() -> set[str]:
    return set(celpy.evaluation.base_functions) | set(KUBERNETES_CEL_FUNCTIONS) | CEL_MACROS


# --- metadata: the formats apimachinery enforces ------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# Kinds whose names must be DNS-1123 labels (not subdomains); Service names are DNS-1035 labels.
_LABEL_NAMED_KINDS = frozenset({"Namespace"})
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def _subdomain_ok(value: str) -> bool:
    return len(value) <= 253 and all(_DNS1123_LABEL.match(p) for p in value.split("."))


def _qualified_name_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and _subdomain_ok(prefix)):
        return f"{key!r}: the prefix must be a DNS subdomain"
    if not (len(name) <= 63 and _QUALIFIED_NAME.match(name)):
        return f"{key!r}: the name part must be at most 63 alphanumerics, '-', '_' or '.'"
    return None


def _label_problems(where: str, labels: Any) -> list[str]:
    if not isinstance(labels, dict):
        return []
    found = []
    for key, value in labels.items():
        if (problem := _qualified_name_problem(str(key))) is not None:
            found.append(f"{where}: label key {problem}")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            found.append(f"{where}: label {key}={value!r} is not a valid label value")
    return found


def _meta_problems(where: str, meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return []
    found = _label_problems(f"{where}.labels", meta.get("labels"))
    annotations = meta.get("annotations") or {}
    if isinstance(annotations, dict):
        for key in annotations:
            if (problem := _qualified_name_problem(str(key))) is not None:
                found.append(f"{where}.annotations: key {problem}")
        size = sum(len(str(k)) + len(str(v)) for k, v in annotations.items())
        if size > _ANNOTATIONS_MAX_BYTES:
            found.append(f"{where}.annotations: {size} bytes, above the 256 KiB limit")
    return found


def metadata_problems(obj: dict[str, Any]) -> list[str]:
    """Names, labels and annotations in the formats the API server requires."""
    meta = obj.get("metadata") or {}
    kind, name = obj.get("kind"), str(meta.get("name", ""))
    found = []
    if kind == "Service":
        if not (len(name) <= 63 and _DNS1035_LABEL.match(name)):
            found.append(f".metadata.name: {name!r} is not a DNS-1035 label (Service names)")
    elif kind in _LABEL_NAMED_KINDS:
        if not (len(name) <= 63 and _DNS1123_LABEL.match(name)):
            found.append(f".metadata.name: {name!r} is not a DNS-1123 label")
    elif not _subdomain_ok(name):
        found.append(f".metadata.name: {name!r} is not a DNS-1123 subdomain")
    namespace = meta.get("namespace")
    if namespace is not None and not (
        len(str(namespace)) <= 63 and _DNS1123_LABEL.match(str(namespace))
    ):
        found.append(f".metadata.namespace: {namespace!r} is not a DNS-1123 label")
    found += _meta_problems(".metadata", meta)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    template = spec.get("template")
    if isinstance(template, dict):
        found += _meta_problems(".spec.template.metadata", template.get("metadata"))
    selector = spec.get("selector")
    if kind == "Service":
        found += _label_problems(".spec.selector", selector)
    elif isinstance(selector, dict):
        found += _label_problems(".spec.selector.matchLabels", selector.get("matchLabels"))
    return found
