"""The rules of the ml-mesh policy pack as pure functions over resource properties.

No dependency beyond the standard library, so the same rules run in the policy pack (its own
venv, with pulumi-policy), in `python -m mesh check` on protected stacks (mesh/checks/pack.py)
and in the main test suite against the rendered stacks. `RESOURCE_RULES` and `STACK_RULES` name
each rule by its policy name: the pack's policies and mesh check both call these entries, so a
rule has exactly one implementation. The pack's config (`config.json` beside this file, which
the workflows pass as `--policy-pack-config`) is read by `pack_config`, on both sides too. Properties
arrive as Mappings and Sequences (pulumi-policy wraps them in read-only proxies), never assumed
to be dicts or lists. Each rule returns the violations it found, one message each.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Kinds whose spec holds a pod template (or is a pod).
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod")
# Annotation ml-mesh puts on a VirtualService to name its canary version (mesh/traffic.py).
CANARY_ANNOTATION = "ml-mesh.io/canary"
SAFE_SECCOMP = ("RuntimeDefault", "Localhost")


# The pack's config: {policy name: {property: value}}, the file format of Pulumi's
# `--policy-pack-config` (and of pulumi/actions' `policyPackConfigs` input).
CONFIG_FILE = Path(__file__).resolve().with_name("config.json")

IMAGE_PINNED = "image-pinned"
RESOURCES_LIMITED = "resources-limited"
HARDENED_SECURITY_CONTEXT = "hardened-security-context"
MTLS_STRICT = "mtls-strict"
NO_FAULT_INJECTION = "no-fault-injection"
CANARY_WEIGHT = "canary-weight-within-maximum"
# Pulumi's enforcement levels; every policy of the pack is mandatory unless its config says not.
ENFORCEMENT_LEVELS = ("advisory", "mandatory", "remediate", "disabled")
DEFAULT_ENFORCEMENT = "mandatory"


class PackConfigError(ValueError):
    """The pack's config file cannot be read or is not a pack config; `str()` names the file,
    what is wrong and what would be valid (one line: never a traceback)."""


# The cap a canary gets when the pack config sets none: the default of the policy's config
# schema (policies.py) and of `mesh check`. A constant, so nothing reads a file at import.
DEFAULT_MAX_CANARY_WEIGHT = 50
CONFIG_EXAMPLE = '{"canary-weight-within-maximum": {"maxWeight": 50}}'


def pack_config(path: Path | None = None, label: str = "policy/config.json") -> dict[str, Any]:
    """The pack's config file (default `CONFIG_FILE`), as `--policy-pack-config` reads it,
    checked by `parse_pack_config`; PackConfigError names `label` when it does not read."""
    path = CONFIG_FILE if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PackConfigError(f"{label}: cannot be read ({reason})") from None
    return parse_pack_config(text, label)


def parse_pack_config(text: str, label: str = "policy/config.json") -> dict[str, Any]:
    """A pack config from its JSON text, with the shape Pulumi accepts: an object of policy
    names (or `all`) to an enforcement level or to `{"enforcementLevel"?: level, property:
    value}`, `maxWeight` an integer 0..100. Anything else is a PackConfigError naming `label`."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        where = (
            f" at line {exc.lineno}, column {exc.colno}"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise PackConfigError(
            f"{label}: not valid JSON{where}: {problem}; write an object such as {CONFIG_EXAMPLE}"
        ) from None
    if not isinstance(config, dict):
        raise PackConfigError(
            f"{label}: the policy pack config must be a JSON object such as {CONFIG_EXAMPLE}, "
            f"not a {type(config).__name__}"
        )
    levels = ", ".join(ENFORCEMENT_LEVELS)
    for policy, entry in config.items():
        if isinstance(entry, dict):
            key, level = f"{policy}.enforcementLevel", entry.get("enforcementLevel")
            readable = level is None or level in ENFORCEMENT_LEVELS
        else:
            key, level = policy, entry
            readable = level in ENFORCEMENT_LEVELS
        if not readable:
            raise PackConfigError(f"{label}: {key}: {level!r} is not one of {levels}")
        if isinstance(entry, dict) and policy == CANARY_WEIGHT and "maxWeight" in entry:
            cap = entry["maxWeight"]
            if not _is_whole_number(cap) or not 0 <= cap <= 100:
                raise PackConfigError(
                    f"{label}: {policy}.maxWeight: {cap!r} is not an integer from 0 to 100"
                )
    return config


def policy_config(config: Mapping[str, Any], policy: str) -> Mapping[str, Any]:
    """The properties of one policy in a pack config (a bare enforcement level has none)."""
    entry = config.get(policy)
    return (
        {k: v for k, v in entry.items() if k != "enforcementLevel"}
        if isinstance(entry, Mapping)
        else {}
    )


def enforcement(config: Mapping[str, Any], policy: str) -> str:
    """A policy's enforcement level under a pack config: the policy's own entry (a level, or
    `{"enforcementLevel": ...}`), else `all`, else mandatory, as the Pulumi engine resolves it."""
    entry = config.get(policy)
    level = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
    if level is None:
        level = config.get("all")
    return level if level in ENFORCEMENT_LEVELS else DEFAULT_ENFORCEMENT


def resource_type(api_version: str, kind: str) -> str:
    """The Pulumi type token pulumi-kubernetes registers an object as, the `resource_type` the
    pack's policies see: `kubernetes:<group>/<version>:<Kind>`, the core group as `core/v1`
    (typed classes such as `kubernetes:core/v1:Namespace`; `apiextensions.CustomResource` uses
    `kubernetes:{api_version}:{kind}`, e.g. `kubernetes:networking.istio.io/v1:VirtualService`).
    """
    group_version = api_version if "/" in api_version else f"core/{api_version}"
    return f"kubernetes:{group_version}:{kind}"


def kind_of(resource_type: str) -> str:
    """`kubernetes:apps/v1:Deployment` -> `Deployment` (any other provider: '')."""
    parts = resource_type.split(":")
    return parts[2] if len(parts) == 3 and parts[0] == "kubernetes" else ""


def group_of(resource_type: str) -> str:
    """`kubernetes:security.istio.io/v1:PeerAuthentication` -> `security.istio.io`."""
    parts = resource_type.split(":")
    if len(parts) != 3 or parts[0] != "kubernetes" or "/" not in parts[1]:
        return ""
    return parts[1].split("/")[0]


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _items(node: Any) -> Sequence:
    return node if isinstance(node, Sequence) and not isinstance(node, str) else ()


def pod_spec(kind: str, props: Mapping) -> Mapping | None:
    if kind == "Pod":
        return _get(props, "spec")
    if kind == "CronJob":
        return _get(props, "spec", "jobTemplate", "spec", "template", "spec")
    if kind in WORKLOAD_KINDS:
        return _get(props, "spec", "template", "spec")
    return None


def _containers(spec: Mapping) -> Iterable[Mapping]:
    for field in ("initContainers", "containers"):
        for container in _items(_get(spec, field)):
            if isinstance(container, Mapping):
                yield container


def _each_container(resource_type: str, props: Mapping) -> Iterable[tuple[Mapping, Mapping]]:
    spec = pod_spec(kind_of(resource_type), props)
    if spec is None:
        return
    for container in _containers(spec):
        yield spec, container


def image_has_digest(image: str) -> bool:
    """Pinned to one content by digest (`repo:tag@sha256:<hex>`, or `repo@sha256:<hex>`).

    A tag can be moved to other content after the change that names it was reviewed; a digest
    cannot. Also read by ml-mesh's own check on protected stacks (mesh/checks/images.py).
    """
    return "@sha256:" in image


def image_is_pinned(image: str) -> bool:
    """A tag other than `latest`, or a digest."""
    if image_has_digest(image):
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


def image_problems(resource_type: str, props: Mapping) -> list[str]:
    return [
        f"container {container.get('name')!r}: image {container.get('image')!r} has no tag or "
        "digest, or uses :latest; pin a version tag or @sha256 digest"
        for _, container in _each_container(resource_type, props)
        if not image_is_pinned(str(container.get("image") or ""))
    ]


def limit_problems(resource_type: str, props: Mapping) -> list[str]:
    problems = []
    for _, container in _each_container(resource_type, props):
        limits = _get(container, "resources", "limits") or {}
        requests = _get(container, "resources", "requests") or {}
        missing = [f"limits.{r}" for r in ("cpu", "memory") if r not in limits]
        missing += [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
        if missing:
            problems.append(f"container {container.get('name')!r}: no {', '.join(missing)}")
    return problems


def security_context_problems(resource_type: str, props: Mapping) -> list[str]:
    spec = pod_spec(kind_of(resource_type), props)
    if spec is None:
        return []
    problems = [
        f"pod sets {field}: true"
        for field in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field)
    ]
    pod = _get(spec, "securityContext") or {}
    for container in _containers(spec):
        name = container.get("name")
        context = _get(container, "securityContext") or {}

        def effective(field: str, context: Mapping = context) -> Any:
            """The container's setting, else the pod's (as the kubelet resolves it)."""
            value = context.get(field)
            return pod.get(field) if value is None else value

        missing = []
        if effective("runAsNonRoot") is not True or effective("runAsUser") == 0:
            missing.append("runAsNonRoot: true (and no runAsUser 0)")
        if context.get("allowPrivilegeEscalation") is not False:
            missing.append("allowPrivilegeEscalation: false")
        if context.get("privileged") is True:
            missing.append("no privileged: true")
        if context.get("readOnlyRootFilesystem") is not True:
            missing.append("readOnlyRootFilesystem: true")
        drop = [str(c) for c in _items(_get(context, "capabilities", "drop"))]
        if "ALL" not in drop or _items(_get(context, "capabilities", "add")):
            missing.append("capabilities.drop: [ALL] and nothing added")
        seccomp = context.get("seccompProfile") or pod.get("seccompProfile") or {}
        if _get(seccomp, "type") not in SAFE_SECCOMP:
            missing.append("seccompProfile RuntimeDefault or Localhost")
        if missing:
            problems.append(f"container {name!r} needs {'; '.join(missing)}")
    return problems


def fault_problems(resource_type: str, props: Mapping) -> list[str]:
    if kind_of(resource_type) != "VirtualService":
        return []
    return [
        f"route {route.get('name') or index!r} injects faults; remove models.<m>.fault"
        for index, route in enumerate(_items(_get(props, "spec", "http")))
        if isinstance(route, Mapping) and route.get("fault")
    ]


def canary_share(route: Mapping, canary: str) -> float:
    """Percent of a route's traffic on the canary subset (weights are relative shares)."""
    destinations = [d for d in _items(route.get("route")) if isinstance(d, Mapping)]
    if len(destinations) == 1:
        return 100.0 if _get(destinations[0], "destination", "subset") == canary else 0.0
    weights = [(_get(d, "destination", "subset"), d.get("weight") or 0) for d in destinations]
    total = sum(w for _, w in weights)
    if total == 0:
        return 0.0
    return 100.0 * sum(w for subset, w in weights if subset == canary) / total


# The fields of an Istio HTTPMatchRequest that select requests by what they carry; the others
# (port, gateways, sourceLabels, sourceNamespace, name, ignoreUriCase, statPrefix) only say
# which listener or client a route applies to, so every request there takes the route.
REQUEST_CONDITIONS = ("uri", "scheme", "method", "authority", "headers", "queryParams")
REQUEST_CONDITIONS += ("withoutHeaders",)


def is_weighted_route(route: Mapping) -> bool:
    """A route that takes every request of its port: no match, or a match entry without a
    request condition (ml-mesh's per-port default routes, mesh/traffic.py `default_route`:
    none on the REST port, `port` and `gateways` on the others). A route all of whose entries
    carry a condition (a header or the cookie: ml-mesh's match rules, `match_route`) receives
    only the requests that ask for it: an A/B route, whose share of the traffic is the
    clients' to choose, not a weight. Told apart by content, not by name."""
    entries = [m for m in _items(route.get("match")) if isinstance(m, Mapping)]
    if not entries:
        return True
    return any(not any(m.get(field) for field in REQUEST_CONDITIONS) for m in entries)


def _grpc_content_type(header: Mapping) -> bool:
    """The condition ml-mesh's gRPC rules of an HTTPRoute carry (mesh/gatewayapi/routes.py):
    it tells gRPC from REST, it does not select a share of the clients."""
    name, value = str(header.get("name", "")).lower(), str(header.get("value", ""))
    return name == "content-type" and value.startswith("application/grpc")


def is_weighted_rule(rule: Mapping) -> bool:
    """An HTTPRoute rule that takes every request of its kind (REST, or gRPC by content type):
    a match entry on path `/` (or none) without other header, query or method conditions;
    like `is_weighted_route` for VirtualServices, told apart by content."""
    entries = [m for m in _items(rule.get("matches")) if isinstance(m, Mapping)]
    if not entries:
        return True
    return any(
        not m.get("queryParams")
        and not m.get("method")
        and _get(m, "path", "value") in (None, "/")
        and _get(m, "path", "type") in (None, "PathPrefix")
        and all(_grpc_content_type(h) for h in _items(m.get("headers")) if isinstance(h, Mapping))
        for m in entries
    )


def backend_share(rule: Mapping, service: str) -> float:
    """Percent of an HTTPRoute rule's traffic on the backend Service `service`: weights are
    relative, default 1, and all at 0 send nothing anywhere (Istio answers 500)."""
    refs = [r for r in _items(rule.get("backendRefs")) if isinstance(r, Mapping)]
    weights = [(r.get("name"), r.get("weight", 1) or 0) for r in refs]
    total = sum(w for _, w in weights)
    if total == 0:
        return 0.0
    return 100.0 * sum(w for name, w in weights if name == service) / total


def _http_route_canary_problems(props: Mapping, canary: str, maximum: int) -> list[str]:
    """`routing: gateway-api`: the canary is the backend `<model>-<canary>`, the version
    Service or, on a model's `<model>-pools` route, the version's InferencePool; the model
    is the route's `app` label (its name for routes without one)."""
    model = _get(props, "metadata", "labels", "app") or _get(props, "metadata", "name")
    service = f"{model}-{canary}"
    problems = []
    for index, rule in enumerate(_items(_get(props, "spec", "rules"))):
        if not isinstance(rule, Mapping) or not is_weighted_rule(rule):
            continue
        share = backend_share(rule, service)
        if share > maximum:
            problems.append(
                f"rule {rule.get('name') or index!r} sends {share:g}% to canary {canary!r}, "
                f"above the maximum of {maximum}%; promote by making it the stable version"
            )
    return problems


def canary_weight_problems(resource_type: str, props: Mapping, maximum: int) -> list[str]:
    """The canary's share of each weighted route (`is_weighted_route`) within `maximum`. The
    cap bounds the weighted split of the model's traffic; a match rule's route to the canary
    (an A/B test) is not capped here: `mesh diff` gates adding or changing one on protected
    stacks (`match-change`), as its share of requests cannot be known offline."""
    kind = kind_of(resource_type)
    if kind not in ("VirtualService", "HTTPRoute"):
        return []
    canary = _get(props, "metadata", "annotations", CANARY_ANNOTATION)
    if not canary:
        return []
    if kind == "HTTPRoute":
        return _http_route_canary_problems(props, canary, maximum)
    problems = []
    for index, route in enumerate(_items(_get(props, "spec", "http"))):
        if not isinstance(route, Mapping) or not is_weighted_route(route):
            continue
        share = canary_share(route, canary)
        if share > maximum:
            problems.append(
                f"route {route.get('name') or index!r} sends {share:g}% to canary {canary!r}, "
                f"above the maximum of {maximum}%; promote by making it the stable version"
            )
    return problems


def max_canary_weight(config: Mapping[str, Any]) -> int:
    """The canary cap of a policy config: `maxWeight`, else the policy's default."""
    cap = config.get("maxWeight")
    # The analyzer receives config as a protobuf Struct, whose numbers are doubles (10.0).
    return int(cap) if _is_whole_number(cap) else DEFAULT_MAX_CANARY_WEIGHT


def _is_whole_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return float(value).is_integer()


def mtls_problems(resources: Iterable[tuple[str, Mapping]]) -> list[str]:
    """Every namespace with workloads has a namespace-wide STRICT PeerAuthentication, nothing
    in the stack weakens it, and no DestinationRule turns client TLS off."""
    workload_namespaces: set[str] = set()
    strict_namespaces: set[str] = set()
    problems = []
    for resource_type, props in resources:
        kind = kind_of(resource_type)
        namespace = _get(props, "metadata", "namespace") or "default"
        name = _get(props, "metadata", "name")
        if kind in WORKLOAD_KINDS:
            workload_namespaces.add(namespace)
        elif kind == "PeerAuthentication" and group_of(resource_type) == "security.istio.io":
            mode = _get(props, "spec", "mtls", "mode")
            selector = _get(props, "spec", "selector", "matchLabels")
            if mode == "STRICT" and not selector:
                strict_namespaces.add(namespace)
            elif mode in ("PERMISSIVE", "DISABLE"):
                problems.append(f"PeerAuthentication {namespace}/{name} sets mode {mode}")
            port_modes = _get(props, "spec", "portLevelMtls") or {}
            for port, setting in port_modes.items():
                if _get(setting, "mode") in ("PERMISSIVE", "DISABLE"):
                    problems.append(f"PeerAuthentication {namespace}/{name} weakens port {port}")
        elif kind == "DestinationRule" and group_of(resource_type) == "networking.istio.io":
            policies = [_get(props, "spec", "trafficPolicy")]
            policies += list(_items(_get(props, "spec", "trafficPolicy", "portLevelSettings")))
            for subset in _items(_get(props, "spec", "subsets")):
                policies.append(_get(subset, "trafficPolicy"))
            if any(_get(p, "tls", "mode") == "DISABLE" for p in policies if p):
                problems.append(f"DestinationRule {namespace}/{name} disables client TLS")
    for namespace in sorted(workload_namespaces - strict_namespaces):
        problems.append(
            f"namespace {namespace!r} runs workloads but has no namespace-wide PeerAuthentication "
            "with mtls.mode STRICT (set security.mtls or keep protected: true)"
        )
    return problems


ResourceRule = Callable[[str, Mapping, Mapping[str, Any]], list[str]]
StackRule = Callable[[Iterable[tuple[str, Mapping]], Mapping[str, Any]], list[str]]

# Every rule of the pack by policy name, called with the policy's config properties.
RESOURCE_RULES: dict[str, ResourceRule] = {
    IMAGE_PINNED: lambda resource_type, props, config: image_problems(resource_type, props),
    RESOURCES_LIMITED: lambda resource_type, props, config: limit_problems(resource_type, props),
    HARDENED_SECURITY_CONTEXT: lambda resource_type, props, config: security_context_problems(
        resource_type, props
    ),
    NO_FAULT_INJECTION: lambda resource_type, props, config: fault_problems(resource_type, props),
    CANARY_WEIGHT: lambda resource_type, props, config: canary_weight_problems(
        resource_type, props, max_canary_weight(config)
    ),
}
STACK_RULES: dict[str, StackRule] = {
    MTLS_STRICT: lambda resources, config: mtls_problems(resources),
}

# How strictly each enforcement level holds a plan: `mesh diff` checks a change with the
# stricter of the base's and the head's pack config (remediate, which fixes the resource,
# counts as mandatory: both stop a violating plan from going out unfixed).
STRICTNESS = {"disabled": 0, "advisory": 1, "mandatory": 2, "remediate": 2}


def pack_policies() -> list[str]:
    """Every policy of the pack, in the order the pack lists them."""
    return [*RESOURCE_RULES, *STACK_RULES]


def effective_pack_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A pack config with every policy spelled out: its enforcement level (`all` and the
    default applied, as the engine resolves them) and its properties (`maxWeight` defaulted)."""
    effective = {}
    for policy in pack_policies():
        entry: dict[str, Any] = {"enforcementLevel": enforcement(config, policy)}
        entry.update(policy_config(config, policy))
        if policy == CANARY_WEIGHT:
            entry["maxWeight"] = max_canary_weight(entry)
        effective[policy] = entry
    return effective


def stricter_pack_config(
    base: Mapping[str, Any], head: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each policy at the stricter level of the two configs, the canary cap at the lower
    `maxWeight`: a change is checked by the pack it cannot loosen (the head's other properties
    are kept; on a tie the head's level)."""
    old, new = effective_pack_config(base), effective_pack_config(head)
    stricter = {}
    for policy in pack_policies():
        entry = dict(new[policy])
        if STRICTNESS[old[policy]["enforcementLevel"]] > STRICTNESS[entry["enforcementLevel"]]:
            entry["enforcementLevel"] = old[policy]["enforcementLevel"]
        if policy == CANARY_WEIGHT:
            entry["maxWeight"] = min(old[policy]["maxWeight"], entry["maxWeight"])
        stricter[policy] = entry
    return stricter


def pack_loosenings(base: Mapping[str, Any], head: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, base value, head value) of each setting the head's pack config loosens: a
    policy's enforcement level lowered, the canary's `maxWeight` raised."""
    old, new = effective_pack_config(base), effective_pack_config(head)
    found: list[tuple[str, Any, Any]] = []
    for policy in pack_policies():
        before, after = old[policy]["enforcementLevel"], new[policy]["enforcementLevel"]
        if STRICTNESS[after] < STRICTNESS[before]:
            found.append((policy, before, after))
        if policy == CANARY_WEIGHT and new[policy]["maxWeight"] > old[policy]["maxWeight"]:
            found.append(
                (f"{policy}.maxWeight", old[policy]["maxWeight"], new[policy]["maxWeight"])
            )
    return found
