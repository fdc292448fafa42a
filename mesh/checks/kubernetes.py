"""What the Kubernetes API server refuses, or accepts and then cannot honour (MESH0010-MESH0014).

The conformance tests validate every object against the OpenAPI schema of each supported
Kubernetes version, but a schema cannot compare two fields: a request above its limit, a
Deployment selector that misses its own template, an HPA whose minimum is above its maximum all
validate, and then `pulumi up` fails halfway with `422 Unprocessable Entity`. These rules run the
API server's own semantic validation on the rendered objects, after the server preset is merged
with the model's and the version's overrides (models.workloads.resources), so what a stack file
says is checked as the cluster will see it. Each rule is named after, and cites, the function
it mirrors in kubernetes/kubernetes:

- `pkg/apis/core/validation/validation.go`: ValidateObjectMeta with the kind's name function
  (ValidateServiceName = NameIsDNS1035Label, ValidateNamespaceName = DNS-1123 label, every
  other kind ml-mesh emits NameIsDNSSubdomain), validateContainers, validateContainerPorts,
  ValidateEnv, validateResourceRequirements, ValidateService / validateServicePort;
- `pkg/apis/apps/validation/validation.go`: ValidateDeploymentSpec,
  ValidateRollingUpdateDeployment;
- `pkg/apis/autoscaling/validation/validation.go`: validateHorizontalPodAutoscalerSpec,
  validateMetricSpec, validateMetricTarget;
- `pkg/apis/policy/validation/validation.go`: ValidatePodDisruptionBudgetSpec;
- `staging/src/k8s.io/apimachinery/...`: the formats, in mesh.checks.k8s_formats.

Codes: MESH0010 (error) the API server refuses the object; MESH0011 (warning) it is accepted but
does not do what it says (an env var that hides another, a port name two containers share);
MESH0012 (warning) a selector or reference that finds nothing in the stack; MESH0013 (warning) a
PodDisruptionBudget that blocks every drain; MESH0014 (warning) a GPU for a CPU-only image.
Each finding names the config key a user edits where one caused it, and what would be valid.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from mesh.checks import k8s_formats as fmt
from mesh.checks.findings import (
    BUDGET_BLOCKS_DRAINS,
    GPU_ON_CPU_IMAGE,
    KUBERNETES_REFUSES,
    KUBERNETES_WARNS,
    SELECTS_NOTHING,
    Finding,
)
from mesh.checks.images import _image_path
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels, _list, _name, _spec
from mesh.checks.paths import _finding, _model, _model_path
from mesh.checks.quantity import format_quantity, parse_quantity
from mesh.trace.objects import selects  # metav1 LabelSelectorAsSelector(...).Matches
from models.workloads import SERVER_CONTAINER

_T = TypeVar("_T")
GPU = "nvidia.com/gpu"
CLUSTER_SCOPED = frozenset({"Namespace", "ClusterRole", "ClusterRoleBinding"})
# metadata.name per kind: the nameFn ValidateObjectMeta gets; every other kind (ConfigMap,
# ServiceAccount, Deployment, HPA, PDB, NetworkPolicy and custom resources) NameIsDNSSubdomain.
NAME_RULES = {
    "Service": ("ValidateServiceName = NameIsDNS1035Label", fmt.dns1035_label),
    "Namespace": ("ValidateNamespaceName, a DNS-1123 label", fmt.dns1123_label),
}
SUBDOMAIN_NAME = ("NameIsDNSSubdomain", fmt.dns1123_subdomain)
PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")  # supportedPortProtocols
STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
# RelaxedEnvironmentVariableValidation: beta, on by default, from 1.32 (GA 1.34).
RELAXED_ENV_NAMES = (1, 32)


# --- shared ----------------------------------------------------------------------------------


def _refused(
    index: _Index, obj: dict[str, Any], path: str | None, message: str, rule: str
) -> Finding:
    return _finding(
        index,
        obj,
        KUBERNETES_REFUSES,
        "error",
        path,
        f"{message} (the API server refuses it: {rule})",
    )


def _version_path(index: _Index, obj: dict[str, Any], *rest: str) -> str | None:
    """`models.<m>.versions.<v>[.rest]` for an object of one version; `models.<m>` for one of
    the whole model (its Service) when no `rest` is asked for; None otherwise."""
    model = _model(index, obj)
    version = _labels(obj).get("version")
    if model is None or version not in index.config.models[model].versions:
        return _model_path(index, obj, *rest) if model and not rest else None
    return ".".join(("models", model, "versions", str(version), *rest))


def _once(compute: Callable[[], _T]) -> Callable[[], _T]:
    """`compute()`, worked out the first time it is asked for and only then: most objects
    have no finding, and the config key a finding would name costs more to find than the
    check itself (a plan of 300 models has about 7,000 of them)."""
    done: list[_T] = []

    def value() -> _T:
        if not done:
            done.append(compute())
        return done[0]

    return value


def _server_path(
    index: _Index, deployment: dict[str, Any], container: str
) -> Callable[[], str | None]:
    """The version's config path (when asked) for a finding on the server container, None for
    any other container (the mesh's sidecars, a user's init container)."""
    if container != SERVER_CONTAINER:
        return lambda: None
    return _once(lambda: _version_path(index, deployment))


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(_spec(deployment).get("template")).get("spec"))


def _containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every container of a pod spec with its field path, init containers first."""
    for field in ("initContainers", "containers"):
        for i, container in enumerate(_list(pod.get(field))):
            yield f"{field}[{i}]", _dict(container)


def _selector_problems(selector: dict[str, Any]) -> Iterator[str]:
    """ValidateLabelSelector: matchLabels are labels; expression keys qualified names, an
    operator Kubernetes knows, values only and always for In/NotIn."""
    yield from _label_problems(_dict(selector.get("matchLabels")), "matchLabels")
    for i, expression in enumerate(_list(selector.get("matchExpressions"))):
        expression = _dict(expression)
        where = f"matchExpressions[{i}]"
        for problem in fmt.label_key(str(expression.get("key", ""))):
            yield f"{where}.key {expression.get('key')!r}: {problem}"
        operator, values = expression.get("operator"), _list(expression.get("values"))
        if operator in ("In", "NotIn") and not values:
            yield f"{where}.values: must be specified when `operator` is 'In' or 'NotIn'"
        elif operator in ("Exists", "DoesNotExist") and values:
            yield f"{where}.values: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
        elif operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            yield f"{where}.operator: Unsupported value {operator!r}: In, NotIn, Exists, DoesNotExist"
        for value in values:
            for problem in fmt.label_value(value):
                yield f"{where}.values {value!r}: {problem}"


def _label_problems(labels: dict[str, Any], where: str) -> Iterator[str]:
    """ValidateLabels: each key a qualified name, each value a label value."""
    for key, value in labels.items():
        for problem in fmt.label_key(str(key)):
            yield f"{where} key {key!r}: {problem}"
        for problem in fmt.label_value(value):
            yield f"{where}[{key}] value {value!r}: {problem}"


def _annotation_problems(annotations: dict[str, Any], where: str) -> Iterator[str]:
    """ValidateAnnotations: keys are qualified names (case-insensitive), 256 KiB in all."""
    for key in annotations:
        for problem in fmt.label_key(str(key).lower()):
            yield f"{where} key {key!r}: {problem}"
    size = fmt.annotations_size(annotations)
    if size > fmt.TOTAL_ANNOTATION_SIZE:
        yield (
            f"{where}: Too long: may not be more than {fmt.TOTAL_ANNOTATION_SIZE} bytes "
            f"(keys and values together are {size})"
        )


@dataclass(frozen=True)
class _Template:
    """Pods the stack will run: a Deployment's template, or the primary Flagger copies it to."""

    namespace: str
    labels: dict[str, Any]
    replicas: int
    pod: dict[str, Any]


def _pod_templates(index: _Index) -> list[_Template]:
    """Every pod template with the replicas it runs at rest: spec.replicas, else the minimum
    of the HPA that owns the field, else 1 (the API default). A Canary's target also yields
    the primary Flagger creates from it, whose selector label gets `-primary` (Flagger
    pkg/canary/util.go makePrimaryLabels), so budgets and Services that select the primary
    are matched against the pods it will have."""
    minimums = {
        (index.ns(h), str(_dict(_spec(h).get("scaleTargetRef")).get("name"))): _spec(h).get(
            "minReplicas", 1
        )
        for h in index.by_kind["HorizontalPodAutoscaler"]
    }
    targets = {
        (index.ns(c), str(_dict(_spec(c).get("targetRef")).get("name")))
        for c in index.by_kind["Canary"]
    }
    found = []
    for deployment in index.by_kind["Deployment"]:
        spec, key = _spec(deployment), (index.ns(deployment), _name(deployment))
        labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
        replicas = spec.get("replicas", minimums.get(key, 1))
        replicas = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 1
        found.append(_Template(key[0], labels, replicas, _pod(deployment)))
        if key in targets:
            selected = _dict(_dict(spec.get("selector")).get("matchLabels"))
            primary = {k: f"{v}-primary" if k in selected else v for k, v in labels.items()}
            found.append(_Template(key[0], primary, replicas, _pod(deployment)))
    return found


class _Pods:
    """The pod templates by namespace and by (namespace, label, value), so a selector is
    matched against the templates carrying its first label only: linear in the plan."""

    def __init__(self, index: _Index):
        self.by_namespace: dict[str, list[_Template]] = defaultdict(list)
        self.by_label: dict[tuple[str, str, str], list[_Template]] = defaultdict(list)
        for template in _pod_templates(index):
            self.by_namespace[template.namespace].append(template)
            for key, value in template.labels.items():
                self.by_label[(template.namespace, str(key), str(value))].append(template)

    def matching(self, namespace: str, selector: dict[str, Any]) -> list[_Template]:
        labels = _dict(selector.get("matchLabels"))
        if labels:
            key, value = next(iter(labels.items()))
            candidates = self.by_label.get((namespace, str(key), str(value)), [])
        else:
            candidates = self.by_namespace.get(namespace, [])
        return [t for t in candidates if selects(selector, t.labels)]


# --- metadata --------------------------------------------------------------------------------


def object_metadata(index: _Index) -> Iterator[Finding]:
    """ValidateObjectMeta on every object, and ValidateTemplateObjectMeta (labels, annotations)
    on every pod template: the name by the kind's name function, the namespace a DNS label,
    labels and annotation keys qualified names, label values at most 63 characters, the
    annotations at most 256 KiB together."""
    for kind, objects in index.by_kind.items():
        name_rule, name_fn = NAME_RULES.get(kind, SUBDOMAIN_NAME)
        for obj in objects:
            meta = _dict(obj.get("metadata"))
            path = _once(lambda obj=obj: _version_path(index, obj))
            name = meta.get("name")
            if not isinstance(name, str) or not name:
                yield _refused(
                    index, obj, path(), "metadata.name: Required value", "ValidateObjectMeta"
                )
            else:
                for problem in name_fn(name):
                    yield _refused(
                        index,
                        obj,
                        path(),
                        f"metadata.name {name!r}: {problem}",
                        f"ValidateObjectMeta, {name_rule}",
                    )
            namespace = meta.get("namespace")
            if kind not in CLUSTER_SCOPED and isinstance(namespace, str):
                for problem in fmt.dns1123_label(namespace):
                    yield _refused(
                        index,
                        obj,
                        "namespace",
                        f"metadata.namespace {namespace!r}: {problem}",
                        "ValidateNamespaceName",
                    )
            where = [("metadata", meta)]
            if kind == "Deployment":
                where.append(
                    (
                        "spec.template.metadata",
                        _dict(_dict(_spec(obj).get("template")).get("metadata")),
                    )
                )
            for field, block in where:
                for problem in _label_problems(_dict(block.get("labels")), f"{field}.labels"):
                    yield _refused(index, obj, path(), problem, "ValidateLabels")
                for problem in _annotation_problems(
                    _dict(block.get("annotations")), f"{field}.annotations"
                ):
                    yield _refused(index, obj, path(), problem, "ValidateAnnotations")


MAX_CONFIG_MAP_SIZE = 1024 * 1024  # core.MaxSecretSize, also the ConfigMap limit


def config_maps(index: _Index) -> Iterator[Finding]:
    """ValidateConfigMap: keys by IsConfigMapKey, data and binaryData at most 1 MiB together
    (a dashboard of many panels can grow past it)."""
    for config_map in index.by_kind["ConfigMap"]:
        total = 0
        for field in ("data", "binaryData"):
            for key, value in _dict(config_map.get(field)).items():
                if not fmt.is_config_map_key(str(key)):
                    yield _refused(
                        index,
                        config_map,
                        _model_path(index, config_map),
                        f"{field} key {key!r}: a valid config key must consist of alphanumeric "
                        "characters, '-', '_' or '.' (at most 253)",
                        "ValidateConfigMap, IsConfigMapKey",
                    )
                total += len(str(value).encode())
        if total > MAX_CONFIG_MAP_SIZE:
            yield _refused(
                index,
                config_map,
                _model_path(index, config_map),
                f"data: Too long: may not be more than {MAX_CONFIG_MAP_SIZE} bytes ({total})",
                "ValidateConfigMap",
            )


# --- pods ------------------------------------------------------------------------------------


def pod_templates(index: _Index) -> Iterator[Finding]:
    """validateContainers, validateContainerPorts, ValidateEnv and
    validateResourceRequirements on the pod template of every Deployment."""
    relaxed = index.config.platform.kubernetes() >= RELAXED_ENV_NAMES
    for deployment in index.by_kind["Deployment"]:
        pod = _pod(deployment)
        names: set[str] = set()
        port_owner: dict[str, str] = {}
        for where, container in _containers(pod):
            name = str(container.get("name", ""))
            field = f"spec.template.spec.{where}"
            path = _server_path(index, deployment, name)
            for problem in fmt.dns1123_label(name):
                yield _refused(
                    index,
                    deployment,
                    path(),
                    f"{field}.name {name!r}: {problem}",
                    "validateContainers",
                )
            if name in names:
                yield _refused(
                    index,
                    deployment,
                    path(),
                    f"{field}.name: Duplicate value {name!r}",
                    "validateContainers",
                )
            names.add(name)
            yield from _ports(index, deployment, field, container, port_owner)
            yield from _probes(index, deployment, field, container)
            yield from _env(index, deployment, field, container, relaxed)
            yield from _resources(index, deployment, field, container)


def _ports(
    index: _Index,
    deployment: dict[str, Any],
    field: str,
    container: dict[str, Any],
    owner: dict[str, str],
) -> Iterator[Finding]:
    """validateContainerPorts: IANA_SVC_NAME names unique in the container, ports 1-65535, a
    protocol Kubernetes supports (empty defaults to TCP). A name two containers share passes,
    but a Service targetPort or probe naming it resolves to the first container's port
    (podutil.FindPort walks the containers in order): a warning."""
    name = str(container.get("name", ""))
    path = _server_path(index, deployment, name)
    own: set[str] = set()
    for i, port in enumerate(_list(container.get("ports"))):
        port = _dict(port)
        at = f"{field}.ports[{i}]"
        port_name = port.get("name")
        if port_name:
            problems = fmt.port_name(str(port_name))
            for problem in problems:
                yield _refused(
                    index,
                    deployment,
                    path(),
                    f"{at}.name {port_name!r}: {problem}",
                    "validateContainerPorts, IsValidPortName",
                )
            if not problems and port_name in own:
                yield _refused(
                    index,
                    deployment,
                    path(),
                    f"{at}.name: Duplicate value {port_name!r}",
                    "validateContainerPorts",
                )
            elif not problems and port_name in owner and owner[port_name] != name:
                yield _finding(
                    index,
                    deployment,
                    KUBERNETES_WARNS,
                    "warning",
                    path(),
                    f"{at}.name {port_name!r} is also a port of container {owner[port_name]!r}: a "
                    "Service targetPort or probe that names it resolves to that container's port "
                    "(podutil.FindPort takes the first); give each port its own name",
                )
            own.add(str(port_name))
            owner.setdefault(str(port_name), name)
        for problem in fmt.port_number(port.get("containerPort")):
            yield _refused(
                index,
                deployment,
                path(),
                f"{at}.containerPort {port.get('containerPort')!r}: {problem}",
                "validateContainerPorts, IsValidPortNum",
            )
        protocol = port.get("protocol")
        if protocol not in (None, "", *PORT_PROTOCOLS):
            yield _refused(
                index,
                deployment,
                path(),
                f"{at}.protocol: Unsupported value {protocol!r}: supported values: TCP, UDP, SCTP",
                "validateContainerPorts",
            )


def _probes(
    index: _Index, deployment: dict[str, Any], field: str, container: dict[str, Any]
) -> Iterator[Finding]:
    """validateHTTPGetAction / validateTCPSocketAction: a probe port is a number or an
    IANA_SVC_NAME (ValidatePortNumOrName). A name the container has no port for passes, then
    the kubelet cannot resolve it and the probe fails on every try (the container never
    turns ready, or is restarted by its liveness probe): a warning."""
    name = str(container.get("name", ""))
    path = _server_path(index, deployment, name)
    own = {_dict(p).get("name") for p in _list(container.get("ports"))}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        for action in ("httpGet", "tcpSocket"):
            handler = _dict(_dict(container.get(probe)).get(action))
            if "port" not in handler:
                continue
            port, at = handler["port"], f"{field}.{probe}.{action}.port"
            problems = fmt.port_number_or_name(port)
            for problem in problems:
                yield _refused(
                    index, deployment, path(), f"{at} {port!r}: {problem}", "ValidatePortNumOrName"
                )
            if not problems and isinstance(port, str) and port not in own:
                yield _finding(
                    index,
                    deployment,
                    SELECTS_NOTHING,
                    "warning",
                    path(),
                    f"{at} {port!r} names no port of container {name!r}: the kubelet cannot "
                    "resolve it and the probe fails on every try",
                )


def _env_path(index: _Index, deployment: dict[str, Any], container: str, var: str) -> str | None:
    model = _model(index, deployment)
    if model is None or container != SERVER_CONTAINER:
        return None
    custom = index.config.models[model].custom
    if custom is not None and var in custom.env:
        return f"models.{model}.custom.env.{var}"
    if custom is not None and var in custom.secret_env:
        return f"models.{model}.custom.secretEnv.{var}"
    return None


def _env(
    index: _Index, deployment: dict[str, Any], field: str, container: dict[str, Any], relaxed: bool
) -> Iterator[Finding]:
    """ValidateEnv: names by IsEnvVarName (IsRelaxedEnvVarName from 1.32). A name set twice is
    accepted with a warning (pkg/api/pod/warnings.go: "hides previous definition of ..., which
    may be dropped when using apply")."""
    seen: set[str] = set()
    rule = "ValidateEnv, " + ("IsRelaxedEnvVarName" if relaxed else "IsEnvVarName")
    container_name = str(container.get("name"))
    for i, var in enumerate(_list(container.get("env"))):
        name = str(_dict(var).get("name", ""))
        path = _once(lambda name=name: _env_path(index, deployment, container_name, name))
        for problem in fmt.env_var_name(name, relaxed):
            yield _refused(
                index, deployment, path(), f"{field}.env[{i}].name {name!r}: {problem}", rule
            )
        if name in seen:
            yield _finding(
                index,
                deployment,
                KUBERNETES_WARNS,
                "warning",
                path(),
                f"{field}.env[{i}]: hides previous definition of {name!r}, which may be dropped "
                "when using apply; set each variable once",
            )
        seen.add(name)


# --- resources -------------------------------------------------------------------------------


def _overcommit_allowed(resource: str) -> bool:
    """helper.IsOvercommitAllowed: native resources (no prefix, or *kubernetes.io/) except
    hugepages; extended resources such as nvidia.com/gpu are allocated whole, never shared."""
    native = "/" not in resource or "kubernetes.io/" in resource
    return native and not resource.startswith("hugepages-")


def _resource_name_problem(resource: str) -> str | None:
    """validateContainerResourceName: a standard container resource, or a qualified extended
    resource name."""
    if fmt.label_key(resource):
        return (
            "must be a standard resource for containers or a qualified name (e.g. nvidia.com/gpu)"
        )
    if (
        "/" not in resource
        and resource not in STANDARD_CONTAINER_RESOURCES
        and not resource.startswith("hugepages-")
    ):
        return "must be a standard resource for containers: cpu, memory, ephemeral-storage, hugepages-<size>"
    return None


def _resource_key(
    index: _Index, deployment: dict[str, Any], container: str, side: str, resource: str
) -> str | None:
    """The key that set this value: the version's resources, else the model's; None when it
    came from the server preset (models/presets.py) or the container is not the server."""
    model_name = _model(index, deployment)
    version = _labels(deployment).get("version")
    if model_name is None or container != SERVER_CONTAINER:
        return None
    model = index.config.models[model_name]
    candidates = []
    if version in model.versions:
        candidates.append(
            (
                model.versions[str(version)].resources,
                f"models.{model_name}.versions.{version}.resources",
            )
        )
    candidates.append((model.resources, f"models.{model_name}.resources"))
    for resources, prefix in candidates:
        if resources is None:
            continue
        if resource == GPU and resources.gpu:
            return f"{prefix}.gpu"
        if (
            resource in ("cpu", "memory")
            and getattr(getattr(resources, side), resource) is not None
        ):
            return f"{prefix}.{side}.{resource}"
    return None


def _resources(
    index: _Index, deployment: dict[str, Any], field: str, container: dict[str, Any]
) -> Iterator[Finding]:
    """validateResourceRequirements: names a container may request, quantities that parse,
    are not negative and (extended resources) whole; each request at most its limit, and equal
    to it for resources that cannot be overcommitted, which also need a limit."""
    name = str(container.get("name", ""))
    resources = _dict(container.get("resources"))
    values: dict[str, dict[str, tuple[str, Decimal]]] = {"limits": {}, "requests": {}}
    fallback = _once(
        lambda: _version_path(index, deployment, "resources") if name == SERVER_CONTAINER else None
    )

    def set_by(side: str, resource: str) -> str | None:
        """The key that set this container's `side`.`resource` (see `_resource_key`)."""
        return _resource_key(index, deployment, name, side, resource)

    rule = "validateResourceRequirements"
    for side in ("limits", "requests"):
        for resource, raw in _dict(resources.get(side)).items():
            key = _once(lambda side=side, resource=resource: set_by(side, resource) or fallback())
            at = f"{field}.resources.{side}.{resource}"
            if problem := _resource_name_problem(str(resource)):
                yield _refused(index, deployment, key(), f"{at}: {problem}", rule)
            try:
                value = parse_quantity(raw)
            except ValueError as error:
                yield _refused(index, deployment, key(), f"{at}: {error}", rule)
                continue
            if value < 0:
                yield _refused(
                    index,
                    deployment,
                    key(),
                    f"{at} {raw}: must be greater than or equal to 0",
                    "ValidateResourceQuantityValue",
                )
            elif not _overcommit_allowed(str(resource)) and "/" in str(resource) and value % 1:
                yield _refused(
                    index,
                    deployment,
                    key(),
                    f"{at} {raw}: must be an integer",
                    "ValidateResourceQuantityValue",
                )
            values[side][str(resource)] = (str(raw), value)

    def keys(resource: str) -> tuple[str | None, str | None, str | None]:
        """(the request's key, the limit's, the one a finding names), for findings only."""
        request_key, limit_key = set_by("requests", resource), set_by("limits", resource)
        return request_key, limit_key, request_key or limit_key or fallback()

    for resource, (raw, request) in values["requests"].items():
        limit = values["limits"].get(resource)
        if limit is None:
            if not _overcommit_allowed(resource):
                yield _refused(
                    index,
                    deployment,
                    keys(resource)[2],
                    f"container {name!r} requests {resource} {raw} without a limit: Limit must "
                    f"be set for non overcommitable resources; set limits.{resource} to {raw}",
                    rule,
                )
            continue
        limit_raw, limit_value = limit
        if not _overcommit_allowed(resource) and request != limit_value:
            yield _refused(
                index,
                deployment,
                keys(resource)[2],
                f"container {name!r} requests {resource} {raw} but its limit is {limit_raw}: "
                f"must be equal to {resource} limit of {limit_raw} ({resource} cannot be "
                "overcommitted, a device is allocated whole); set both to the same count "
                "(resources.gpu sets both)",
                rule,
            )
        elif request > limit_value:
            request_key, limit_key, key = keys(resource)
            yield _refused(
                index,
                deployment,
                key,
                f"container {name!r} requests {resource} {_shown(raw, request)} but its limit is "
                f"{_shown(limit_raw, limit_value)}{_origin(index, deployment, name, limit_key)}: "
                f"must be less than or equal to {resource} limit of {limit_raw}; raise "
                f"{_limit_fix(limit_key, request_key, resource)} to at least {raw} or lower the "
                "request",
                rule,
            )


def _shown(raw: str, value: Decimal) -> str:
    """`2Gi (2147483648)`: the text, and its value where the two differ."""
    plain = format_quantity(value)
    return raw if raw == plain else f"{raw} ({plain})"


def _origin(index: _Index, deployment: dict[str, Any], container: str, key: str | None) -> str:
    model = _model(index, deployment)
    if key is not None or model is None or container != SERVER_CONTAINER:
        return ""
    return f" (the {index.config.models[model].server} preset's)"


def _limit_fix(limit_key: str | None, request_key: str | None, resource: str) -> str:
    """The limit key to raise: the one that set it, else the request's level."""
    if limit_key is not None:
        return limit_key
    if request_key is not None:
        return request_key.replace(".requests.", ".limits.")
    return f"limits.{resource}"


# --- Deployments -----------------------------------------------------------------------------


def _int_or_percent(value: Any) -> tuple[int | None, bool]:
    """(number, is_percent) of an IntOrString, or (None, _) when it is neither."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, False
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        return int(value[:-1]), True
    return None, False


def _positive_int_or_percent(value: Any, at: str) -> Iterator[str]:
    """ValidatePositiveIntOrPercent and IsNotMoreThan100Percent (apps/validation)."""
    number, percent = _int_or_percent(value)
    if number is None:
        yield f"{at} {value!r}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', '93%'), or an integer"
    elif number < 0:
        yield f"{at} {value!r}: must be greater than or equal to 0"
    elif percent and number > 100:
        yield f"{at} {value!r}: must not be greater than 100%"


def deployment_specs(index: _Index) -> Iterator[Finding]:
    """ValidateDeploymentSpec: a non-empty selector that matches the template's labels,
    replicas and revisionHistoryLimit not negative, a RollingUpdate that can make progress
    (maxSurge and maxUnavailable not both 0), progressDeadlineSeconds above minReadySeconds,
    restartPolicy Always."""
    rule = "ValidateDeploymentSpec"
    for deployment in index.by_kind["Deployment"]:
        spec = _spec(deployment)
        path = _version_path(index, deployment)
        selector = spec.get("selector")
        labels = _dict(_dict(_dict(spec.get("template")).get("metadata")).get("labels"))
        if not isinstance(selector, dict):
            yield _refused(index, deployment, path, "spec.selector: Required value", rule)
        elif not _dict(selector.get("matchLabels")) and not _list(selector.get("matchExpressions")):
            yield _refused(
                index,
                deployment,
                path,
                "spec.selector: empty selector is invalid for deployment",
                rule,
            )
        else:
            for problem in _selector_problems(selector):
                yield _refused(
                    index, deployment, path, f"spec.selector.{problem}", "ValidateLabelSelector"
                )
            if not selects(selector, labels):
                yield _refused(
                    index,
                    deployment,
                    path,
                    f"spec.template.metadata.labels {labels}: `selector` does not match template "
                    f"`labels` (selector {selector}); the pod template must carry every label "
                    "the selector names",
                    rule,
                )
        for field in ("replicas", "revisionHistoryLimit", "minReadySeconds"):
            value = spec.get(field)
            if isinstance(value, int) and value < 0:
                yield _refused(
                    index,
                    deployment,
                    _version_path(index, deployment, "replicas") if field == "replicas" else path,
                    f"spec.{field} {value}: must be greater than or equal to 0",
                    rule,
                )
        strategy = _dict(spec.get("strategy"))
        rolling = _dict(strategy.get("rollingUpdate"))
        rollout = _model_path(index, deployment, "rollout")
        if strategy.get("type", "RollingUpdate") == "RollingUpdate" and rolling:
            surge, unavailable = (
                rolling.get("maxSurge", "25%"),
                rolling.get("maxUnavailable", "25%"),
            )
            for field, value in (("maxSurge", surge), ("maxUnavailable", unavailable)):
                for problem in _positive_int_or_percent(
                    value, f"spec.strategy.rollingUpdate.{field}"
                ):
                    yield _refused(
                        index, deployment, rollout, problem, "ValidateRollingUpdateDeployment"
                    )
            if _int_or_percent(surge)[0] == 0 and _int_or_percent(unavailable)[0] == 0:
                yield _refused(
                    index,
                    deployment,
                    rollout,
                    "spec.strategy.rollingUpdate.maxUnavailable: may not be 0 when `maxSurge` is "
                    "0 (no pod could ever be replaced); use rollout 'surge' (maxSurge 1) or "
                    "'replace' (maxUnavailable 1)",
                    "ValidateRollingUpdateDeployment",
                )
        deadline, ready = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0)
        if isinstance(deadline, int) and isinstance(ready, int) and deadline <= ready:
            yield _refused(
                index,
                deployment,
                _model_path(index, deployment, "startup"),
                f"spec.progressDeadlineSeconds {deadline}: must be greater than minReadySeconds ({ready})",
                rule,
            )
        policy = _pod(deployment).get("restartPolicy")
        if policy not in (None, "Always"):
            yield _refused(
                index,
                deployment,
                path,
                f"spec.template.spec.restartPolicy: Unsupported value {policy!r}: supported values: Always",
                rule,
            )


# --- Services --------------------------------------------------------------------------------


def services(index: _Index) -> Iterator[Finding]:
    """ValidateService and validateServicePort: ports required, each named (a DNS label,
    unique) when there are several, port numbers, protocols, targetPort a number or IANA name,
    appProtocol a qualified name, no two ports with one port and protocol, selector labels.
    And what the API server cannot see: a selector no pod template of the stack matches (the
    Service has no endpoints), a named targetPort none of the selected pods has (that port
    has no endpoints: requests to it are refused)."""
    pods = _Pods(index)
    for svc in index.by_kind["Service"]:
        spec = _spec(svc)
        path = _model_path(index, svc)
        ports = [_dict(p) for p in _list(spec.get("ports"))]
        headless = spec.get("clusterIP") == "None"
        if not ports and not headless and spec.get("type") != "ExternalName":
            yield _refused(index, svc, path, "spec.ports: Required value", "ValidateService")
        names: set[str] = set()
        keys: set[tuple[Any, str]] = set()
        for i, port in enumerate(ports):
            at = f"spec.ports[{i}]"
            name = port.get("name")
            if len(ports) > 1 and not name:
                yield _refused(
                    index,
                    svc,
                    path,
                    f"{at}.name: Required value (every port needs a name when a Service has more than one)",
                    "validateServicePort",
                )
            elif name:
                for problem in fmt.dns1123_label(str(name)):
                    yield _refused(
                        index, svc, path, f"{at}.name {name!r}: {problem}", "validateServicePort"
                    )
                if name in names:
                    yield _refused(
                        index,
                        svc,
                        path,
                        f"{at}.name: Duplicate value {name!r}",
                        "validateServicePort",
                    )
                names.add(str(name))
            for problem in fmt.port_number(port.get("port")):
                yield _refused(
                    index,
                    svc,
                    path,
                    f"{at}.port {port.get('port')!r}: {problem}",
                    "validateServicePort",
                )
            protocol = port.get("protocol") or "TCP"
            if protocol not in PORT_PROTOCOLS:
                yield _refused(
                    index,
                    svc,
                    path,
                    f"{at}.protocol: Unsupported value {protocol!r}: supported values: TCP, UDP, SCTP",
                    "validateServicePort",
                )
            if "targetPort" in port:
                for problem in fmt.port_number_or_name(port["targetPort"]):
                    yield _refused(
                        index,
                        svc,
                        path,
                        f"{at}.targetPort {port['targetPort']!r}: {problem}",
                        "validateServicePort, ValidatePortNumOrName",
                    )
            if port.get("appProtocol") is not None:
                for problem in fmt.label_key(str(port["appProtocol"])):
                    yield _refused(
                        index,
                        svc,
                        path,
                        f"{at}.appProtocol {port['appProtocol']!r}: {problem}",
                        "validateServicePort",
                    )
            key = (port.get("port"), protocol)
            if key in keys:
                yield _refused(
                    index,
                    svc,
                    path,
                    f"{at}: Duplicate value: port {key[0]}/{protocol} is already a port of this Service",
                    "ValidateService",
                )
            keys.add(key)
        selector = _dict(spec.get("selector"))
        for problem in _label_problems(selector, "spec.selector"):
            yield _refused(index, svc, path, problem, "ValidateService, ValidateLabels")
        if not selector:
            continue
        matched = pods.matching(index.ns(svc), {"matchLabels": selector})
        if not matched:
            yield _finding(
                index,
                svc,
                SELECTS_NOTHING,
                "warning",
                path,
                f"spec.selector {selector} matches no pod template of the stack in namespace "
                f"{index.ns(svc)!r}: the Service gets no endpoints and every request to it fails",
            )
            continue
        for i, port in enumerate(ports):
            target = port.get("targetPort")
            if not isinstance(target, str):
                continue
            missing = [t for t in matched if not _has_port(t.pod, target)]
            if missing:
                yield _finding(
                    index,
                    svc,
                    SELECTS_NOTHING,
                    "warning",
                    path,
                    f"spec.ports[{i}].targetPort {target!r} is no container port of "
                    f"{len(missing)} of the {len(matched)} pod template(s) the selector matches "
                    f"({missing[0].labels}): those pods get no endpoint for port "
                    f"{port.get('port')}; name the container port {target!r} or target a number",
                )


def _has_port(pod: dict[str, Any], name: str) -> bool:
    return any(
        _dict(p).get("name") == name
        for c in _list(pod.get("containers"))
        for p in _list(_dict(c).get("ports"))
    )


# --- HorizontalPodAutoscalers ----------------------------------------------------------------


METRIC_SOURCES = {
    "Object": "object",
    "Pods": "pods",
    "Resource": "resource",
    "ContainerResource": "containerResource",
    "External": "external",
}


def autoscalers(index: _Index) -> Iterator[Finding]:
    """validateHorizontalPodAutoscalerSpec: minReplicas at least 1 (0 needs the alpha
    HPAScaleToZero gate and an Object or External metric), maxReplicas at least 1 and at least
    minReplicas, a scaleTargetRef with kind and name, metrics per validateMetricSpec and
    validateMetricTarget. And a scaleTargetRef that names no object of the stack: the HPA
    reports FailedGetScale and never scales."""
    rule = "validateHorizontalPodAutoscalerSpec"
    deployments = {(index.ns(d), _name(d)) for d in index.by_kind["Deployment"]}
    for hpa in index.by_kind["HorizontalPodAutoscaler"]:
        spec = _spec(hpa)
        path = _model_path(index, hpa, "autoscaling")
        minimum, maximum = spec.get("minReplicas", 1), spec.get("maxReplicas")
        replicas_path = _version_path(index, hpa, "replicas") or path
        if isinstance(minimum, int) and minimum < 1:
            yield _refused(
                index,
                hpa,
                replicas_path,
                f"spec.minReplicas {minimum}: must be greater than or equal to 1 (an autoscaled version runs at least one pod; park a version with replicas 0 without autoscaling)",
                rule,
            )
        if not isinstance(maximum, int) or maximum < 1:
            yield _refused(
                index,
                hpa,
                path and f"{path}.maxReplicas",
                f"spec.maxReplicas {maximum!r}: must be greater than 0",
                rule,
            )
        elif isinstance(minimum, int) and maximum < minimum:
            yield _refused(
                index,
                hpa,
                path and f"{path}.maxReplicas",
                f"spec.maxReplicas {maximum}: must be greater than or equal to `minReplicas` ({minimum}); raise autoscaling.maxReplicas or lower the version's replicas",
                rule,
            )
        ref = _dict(spec.get("scaleTargetRef"))
        for field in ("kind", "name"):
            value = ref.get(field)
            if not value:
                yield _refused(
                    index,
                    hpa,
                    path,
                    f"spec.scaleTargetRef.{field}: Required value",
                    "ValidateCrossVersionObjectReference",
                )
            elif str(value) in (".", "..") or "/" in str(value) or "%" in str(value):
                yield _refused(
                    index,
                    hpa,
                    path,
                    f"spec.scaleTargetRef.{field} {value!r}: may not be '.' or '..' and may not contain '/' or '%'",
                    "ValidateCrossVersionObjectReference, IsValidPathSegmentName",
                )
        if (
            ref.get("kind") == "Deployment"
            and ref.get("name")
            and (index.ns(hpa), str(ref["name"])) not in deployments
        ):
            yield _finding(
                index,
                hpa,
                SELECTS_NOTHING,
                "warning",
                path,
                f"spec.scaleTargetRef names Deployment {ref['name']!r}, which the stack does not "
                f"create in namespace {index.ns(hpa)!r}: the HPA reports FailedGetScale and never scales",
            )
        for i, metric in enumerate(_list(spec.get("metrics"))):
            for problem in _metric_problems(_dict(metric)):
                yield _refused(
                    index, hpa, path, f"spec.metrics[{i}]{problem}", "validateMetricSpec"
                )


def _metric_problems(metric: dict[str, Any]) -> Iterator[str]:
    kind = metric.get("type")
    if kind not in METRIC_SOURCES:
        yield f".type: Unsupported value {kind!r}: supported values: {', '.join(METRIC_SOURCES)}"
        return
    expected = METRIC_SOURCES[kind]
    for other in METRIC_SOURCES.values():
        if other != expected and other in metric:
            yield f".{other}: Forbidden: must populate the given metric source only"
    source = metric.get(expected)
    if not isinstance(source, dict):
        yield f".{expected}: Required value: must populate information for the given metric source"
        return
    if kind in ("Resource", "ContainerResource"):
        if not source.get("name"):
            yield f".{expected}.name: Required value: must specify a resource name"
    elif not _dict(source.get("metric")).get("name"):
        yield f".{expected}.metric.name: Required value: must specify a metric name"
    yield from _target_problems(_dict(source.get("target")), f".{expected}.target", kind)


def _target_problems(target: dict[str, Any], at: str, kind: str) -> Iterator[str]:
    """validateMetricTarget: a type, and the value that type reads, positive."""
    kinds = {"Utilization": "averageUtilization", "Value": "value", "AverageValue": "averageValue"}
    target_type = target.get("type")
    if target_type not in kinds:
        yield f"{at}.type: Unsupported value {target_type!r}: supported values: Utilization, Value, AverageValue"
        return
    if kind == "Pods" and target_type != "AverageValue":
        yield f"{at}.type: Unsupported value {target_type!r}: a Pods metric supports AverageValue only"
    field = kinds[target_type]
    value = target.get(field)
    if value is None:
        yield f"{at}.{field}: Required value: must set {field} for a {target_type} target"
    elif field == "averageUtilization":
        if not isinstance(value, int) or value < 1:
            yield f"{at}.averageUtilization {value!r}: must be greater than 0"
    else:
        try:
            if parse_quantity(value) <= 0:
                yield f"{at}.{field} {value!r}: must be positive"
        except ValueError as error:
            yield f"{at}.{field}: {error}"


# --- PodDisruptionBudgets --------------------------------------------------------------------


def disruption_budgets(index: _Index) -> Iterator[Finding]:
    """ValidatePodDisruptionBudgetSpec: minAvailable and maxUnavailable not both set, each an
    integer or percentage at most 100%, a valid selector, a known unhealthyPodEvictionPolicy.
    And two traps the API server accepts: a budget that selects no pod of the stack (it
    protects nothing), and one that allows no eviction even with every pod ready (MESH0013)."""
    rule = "ValidatePodDisruptionBudgetSpec"
    pods = _Pods(index)
    for pdb in index.by_kind["PodDisruptionBudget"]:
        spec = _spec(pdb)
        path = _version_path(index, pdb)
        has_min, has_max = "minAvailable" in spec, "maxUnavailable" in spec
        if has_min and has_max:
            yield _refused(
                index,
                pdb,
                path,
                "spec: minAvailable and maxUnavailable cannot be both set; keep maxUnavailable: 1",
                rule,
            )
        for field in ("minAvailable", "maxUnavailable"):
            if field in spec:
                for problem in _positive_int_or_percent(spec[field], f"spec.{field}"):
                    yield _refused(index, pdb, path, problem, rule)
        policy = spec.get("unhealthyPodEvictionPolicy")
        if policy not in (None, "IfHealthyBudget", "AlwaysAllow"):
            yield _refused(
                index,
                pdb,
                path,
                f"spec.unhealthyPodEvictionPolicy: Unsupported value {policy!r}: supported values: AlwaysAllow, IfHealthyBudget",
                rule,
            )
        selector = _dict(spec.get("selector"))
        for problem in _selector_problems(selector):
            yield _refused(index, pdb, path, f"spec.selector.{problem}", "ValidateLabelSelector")
        matched = pods.matching(index.ns(pdb), selector)
        if not matched:
            yield _finding(
                index,
                pdb,
                SELECTS_NOTHING,
                "warning",
                path,
                f"spec.selector {selector} matches no pod template of the stack in namespace "
                f"{index.ns(pdb)!r}: the budget protects nothing, a drain may evict every pod at once",
            )
            continue
        expected = sum(t.replicas for t in matched)
        allowed = _allowed_disruptions(spec, expected)
        if expected > 0 and allowed is not None and allowed <= 0:
            budget = ", ".join(
                f"{f}: {spec[f]}" for f in ("minAvailable", "maxUnavailable") if f in spec
            )
            yield _finding(
                index,
                pdb,
                BUDGET_BLOCKS_DRAINS,
                "warning",
                _version_path(index, pdb, "replicas") or path,
                f"{budget} with {expected} selected pod(s) allows no eviction even when every pod "
                'is ready: `kubectl drain` retries forever (the Eviction API answers 429 "Cannot '
                "evict pod as it would violate the pod's disruption budget\"), so node upgrades, "
                "cluster-autoscaler scale-down and Karpenter consolidation stall on these nodes "
                "until someone deletes the pods by hand; use maxUnavailable: 1, or keep "
                f"minAvailable below the replicas ({expected})",
            )


def _allowed_disruptions(spec: dict[str, Any], pods: int) -> int | None:
    """Evictions the disruption controller allows with all `pods` healthy
    (pkg/controller/disruption: GetScaledValueFromIntOrPercent, rounding up)."""
    if "maxUnavailable" in spec:
        number, percent = _int_or_percent(spec["maxUnavailable"])
        if number is None:
            return None
        return math.ceil(number * pods / 100) if percent else number
    if "minAvailable" in spec:
        number, percent = _int_or_percent(spec["minAvailable"])
        if number is None:
            return None
        return pods - (math.ceil(number * pods / 100) if percent else number)
    return None


# --- GPU images ------------------------------------------------------------------------------


def _image_parts(image: str) -> tuple[str, str | None]:
    """(repository without docker.io/, tag or None) of `repo[:tag][@digest]`."""
    name = image.split("@", 1)[0]
    repository, tag = name, None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = name.rsplit(":", 1)
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        repository = repository.removeprefix(prefix)
    return repository, tag


def cpu_only_image(image: str) -> str | None:
    """Why `image` runs on CPU only, by its publisher's tag convention; None when it may use a
    GPU or the convention says nothing. Conservative: only what a tag clearly says.

    - tensorflow/serving: GPU builds are the `-gpu` tags (`2.16.1-gpu`, `latest-gpu`); every
      other tag is built without CUDA.
    - pytorch/torchserve: `-gpu` tags are CUDA builds; `-cpu` tags and plain `latest` are not.
    - any image whose tag ends in `-cpu` or says `cpu-only`, or whose repository is a CPU build
      (`vllm-cpu`, `...-cpu`).
    - nvcr.io/nvidia/tritonserver and vLLM images (vllm/vllm-openai) are CUDA builds: silent.
    """
    repository, tag = _image_parts(image)
    last = repository.rsplit("/", 1)[-1]
    tag_l = (tag or "").lower()
    if repository.endswith("tensorflow/serving") and tag is not None and "gpu" not in tag_l:
        return f"tensorflow/serving publishes its CUDA builds as '-gpu' tags; {tag!r} is a CPU build (use {tag}-gpu)"
    if repository.endswith("pytorch/torchserve") and tag is not None and "gpu" not in tag_l:
        return (
            f"pytorch/torchserve publishes its CUDA builds as '-gpu' tags; {tag!r} is a CPU build"
        )
    if tag_l == "cpu" or tag_l.endswith("-cpu") or "-cpu-" in tag_l or "cpu-only" in tag_l:
        return f"its tag {tag!r} names a CPU-only build"
    if last.endswith("-cpu") or "-cpu-" in last:
        return f"its repository {repository!r} is a CPU-only build"
    return None


def gpu_images(index: _Index) -> Iterator[Finding]:
    """A container that requests nvidia.com/gpu with an image built without CUDA: the pod
    holds a whole GPU (scheduled only on a GPU node) and the server runs on the CPU; the GPU
    sits idle and the model serves at CPU speed. ml-mesh's own rule, not an API refusal."""
    for deployment in index.by_kind["Deployment"]:
        for _, container in _containers(_pod(deployment)):
            resources = _dict(container.get("resources"))
            count = _dict(resources.get("limits")).get(
                GPU, _dict(resources.get("requests")).get(GPU)
            )
            try:
                gpus = parse_quantity(count) if count is not None else Decimal(0)
            except ValueError:
                continue  # reported by pod_templates
            image = str(container.get("image") or "")
            why = cpu_only_image(image) if gpus > 0 else None
            if why is None:
                continue
            yield _finding(
                index,
                deployment,
                GPU_ON_CPU_IMAGE,
                "warning",
                _image_path(index, deployment, container),
                f"container {container.get('name')!r} requests {format_quantity(gpus)} GPU(s) but "
                f"image {image!r} cannot use one: {why}. The pod holds a whole GPU and serves "
                "at CPU speed; use a GPU image or drop resources.gpu",
            )
