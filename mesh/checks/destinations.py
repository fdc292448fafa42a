"""Routes reach something (IST0101, IST0112) and DestinationRule subsets select pods (IST0173,
IST0174).

A VirtualService destination must name a host visible in its namespace, a port that host
exposes and a subset a DestinationRule defines, and each subset must select pods; otherwise
requests fail with 503 after `pulumi up`, though every object passes its schema.

Each rule follows one of Istio's analyzers (istio/istio 1.30, pkg/config/analysis/analyzers),
with its message template (msg/messages.yaml) first and ml-mesh's explanation after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import (
    DESTINATION_PORT_SELECTOR_REQUIRED,
    INGRESS_ROUTE_RULES_NOT_AFFECTED,
    REFERENCED_RESOURCE_NOT_FOUND,
    SELECTS_NOTHING,
    SUBSET_SELECTS_NO_PODS,
    UNKNOWN_DESTINATION_RULE_HOST,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.objects import (
    _destinations,
    _dict,
    _list,
    _name,
    _routes,
    _spec,
    fqdn,
    resource_name,
)
from mesh.checks.paths import _finding, _model_path, _subset_path


def _go_ints(numbers: list[int]) -> str:
    """A Go `%v` of an `[]int`: `[8500 8501]`."""
    return f"[{' '.join(map(str, numbers))}]"


def virtual_service_destinations(index: _Index) -> Iterator[Finding]:
    """IST0101 (host, mirror host, host:port, host+subset) and IST0112 on every destination.

    Istio's `virtualservice.DestinationHostAnalyzer` (virtualservice/destinationhosts.go): the
    host resolved by `util.GetDestinationHost` from the VirtualService's namespace and exportTo
    (so a ServiceEntry exported elsewhere does not count), then its ports
    (`checkServiceEntryPorts`, a Service's ports or a ServiceEntry's). And
    `virtualservice.DestinationRuleAnalyzer` (virtualservice/destinationrules.go): the subset
    looked up by the host's (namespace, name) (`GetResourceNameFromHost`), whether or not the
    host resolved, as Istio runs the two analyzers independently."""
    for vs in index.by_kind["VirtualService"]:
        namespace = index.ns(vs)
        export_to = _spec(vs).get("exportTo")
        for at, route in _routes(_spec(vs)):
            for where, destination in _destinations(route):
                mirror = where.startswith("mirror")
                where = f"spec.{at}.{where}"
                raw = str(destination.get("host", ""))
                host = fqdn(raw, namespace)
                target = index.destination(raw, namespace, export_to)
                if target is None:
                    kind = "mirror host" if mirror else "host"
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _model_path(index, vs),
                        f"Referenced {kind} not found: {_quote(raw)}: {where} routes to host "
                        f"{host}, which is no Service or ServiceEntry visible in namespace "
                        f"{namespace!r}",
                    )
                else:
                    yield from _destination_port(index, vs, where, raw, host, target, destination)
                subset = destination.get("subset")
                if subset is None or subset == "":
                    continue
                if str(subset) not in index.subsets.get(resource_name(raw, namespace), ()):
                    kind = "mirror+subset" if mirror else "host+subset"
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _subset_path(index, vs, str(subset)),
                        f"Referenced {kind} in destinationrule not found: "
                        f"{_quote(f'{raw}+{subset}')}: {where} routes to subset {subset!r} of "
                        f"{host}, which no DestinationRule defines: requests would fail with 503",
                    )


def ingress_subsets(index: _Index) -> Iterator[Finding]:
    """IST0140, the other half of Istio's `virtualservice.DestinationHostAnalyzer`
    (`analyzeSubset`, destinationhosts.go): a VirtualService bound to gateways routes (http) to
    a host without a subset, while another VirtualService splits that host by subsets (an http
    destination with a subset whose host is one of its own `hosts`). Requests through the
    gateway skip that split: the canary weights do not apply to them. Hosts are compared as
    written, as Istio compares them."""
    split: dict[str, list[str]] = {}  # destination host -> VirtualServices splitting it
    for vs in index.by_kind["VirtualService"]:
        hosts = {str(h) for h in _list(_spec(vs).get("hosts"))}
        for route in map(_dict, _list(_spec(vs).get("http"))):
            for target in map(_dict, _list(route.get("route"))):
                destination = _dict(target.get("destination"))
                host = str(destination.get("host", ""))
                if destination.get("subset") and host in hosts:
                    split.setdefault(host, []).append(f"{index.ns(vs)}/{_name(vs)}")
    for vs in index.by_kind["VirtualService"]:
        if not _list(_spec(vs).get("gateways")):
            continue
        name = f"{index.ns(vs)}/{_name(vs)}"
        for i, route in enumerate(map(_dict, _list(_spec(vs).get("http")))):
            for j, target in enumerate(map(_dict, _list(route.get("route")))):
                destination = _dict(target.get("destination"))
                if destination.get("subset"):
                    continue
                host = str(destination.get("host", ""))
                for splitting in dict.fromkeys(split.get(host, ())):
                    yield _finding(
                        index,
                        vs,
                        INGRESS_ROUTE_RULES_NOT_AFFECTED,
                        "warning",
                        _model_path(index, vs),
                        f"Subset in virtual service {splitting} has no effect on ingress gateway "
                        f"{name} requests: spec.http[{i}].route[{j}] sends them to {host} "
                        f"without a subset, so the split of {splitting} does not apply to them",
                    )


def _quote(value: str) -> str:
    """Go's `%q` of a plain string."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _ports(target: dict[str, Any]) -> list[Any]:
    """The port numbers of a Service (`spec.ports[].port`) or a ServiceEntry
    (`spec.ports[].number`), as `InitServiceEntryHostMap` converts them."""
    field = "port" if target.get("kind") == "Service" else "number"
    return [p.get(field) for p in map(_dict, _list(_spec(target).get("ports")))]


def _destination_port(
    index: _Index,
    vs: dict[str, Any],
    where: str,
    raw: str,
    host: str,
    target: dict[str, Any],
    destination: dict[str, Any],
) -> Iterator[Finding]:
    ports = _ports(target)
    number = _dict(destination.get("port")).get("number")
    what = "the Service" if target.get("kind") == "Service" else "the ServiceEntry"
    if number is None and len(ports) > 1:
        yield _finding(
            index,
            vs,
            DESTINATION_PORT_SELECTOR_REQUIRED,
            "error",
            _model_path(index, vs),
            f"This VirtualService routes to a service {_quote(raw)} that exposes multiple ports "
            f"{_go_ints(ports)}. Specifying a port in the destination is required to "
            f"disambiguate: {where}: {host} has {len(ports)} ports, so the destination must "
            "name one",
        )
    elif number is not None and number not in ports:
        yield _finding(
            index,
            vs,
            REFERENCED_RESOURCE_NOT_FOUND,
            "error",
            _model_path(index, vs, "server"),
            f"Referenced host:port not found: {_quote(f'{raw}:{number}')}: {where} routes to "
            f"port {number} of {host}, which {what} does not expose "
            f"(ports: {', '.join(map(str, sorted(set(ports), key=str)))})",
        )


def destination_rule_subsets(index: _Index) -> Iterator[Finding]:
    """IST0174 and IST0173: Istio's `destinationrule.PodNotSelectedAnalyzer`
    (destinationrule/subset.go). The host is resolved with the DestinationRule's namespace and
    exportTo (`GetDestinationHost`); a subset selects the pods of any namespace carrying the
    ServiceEntry's workloadSelector labels and the subset's (a Service converted to a
    ServiceEntry has no workloadSelector, so its subsets match on their own labels), with the
    pods' labels augmented by their node's topology (`label.AugmentLabels`). Without a cluster
    snapshot the stack's Deployment templates stand for its pods; one scaled to 0 replicas is
    only a warning.

    ml-mesh adds MESH0012 (error) for the stack's own subsets that select pods, but none behind
    their Service (its selector, in its namespace): the endpoints of a subset are the Service's
    endpoints that carry its labels, so routes to it fail with 503 though istioctl is silent."""
    for rule in index.by_kind["DestinationRule"]:
        raw = str(_spec(rule).get("host", ""))
        target = index.destination(raw, index.ns(rule), _spec(rule).get("exportTo"))
        if target is None:
            yield _finding(
                index,
                rule,
                UNKNOWN_DESTINATION_RULE_HOST,
                "warning",
                _model_path(index, rule),
                f"The host {raw} defined in the DestinationRule does not match any services in "
                f"the mesh: {fqdn(raw, index.ns(rule))} is no Service or ServiceEntry visible in "
                f"namespace {index.ns(rule)!r}",
            )
            continue
        is_service = target.get("kind") == "Service"
        selector = (
            {}
            if is_service
            else _strings(_dict(_spec(target).get("workloadSelector")).get("labels"))
        )
        for i, subset in enumerate(map(_dict, _list(_spec(rule).get("subsets")))):
            name = str(subset.get("name"))
            wanted = {**selector, **_strings(subset.get("labels"))}
            selected = index.pods_selected(wanted)
            version_path = _model_path(index, rule, "versions", name)
            istio = (
                f"The Subset {name} defined in the DestinationRule does not select any pods. "
                "Which may lead to 503 UH (NoHealthyUpstream)."
            )
            if selected == "none":
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "error",
                    version_path,
                    f"{istio} spec.subsets[{i}] {name!r} selects no pods (labels {wanted}, in "
                    "any namespace): routes to it would fail with 503",
                )
            elif selected == "scaled-to-0":
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "warning",
                    f"{version_path}.replicas" if version_path else None,
                    f"{istio} spec.subsets[{i}] {name!r} selects only Deployments scaled to 0 "
                    "replicas: istioctl analyze reports this once deployed; harmless while no "
                    "route sends traffic to it",
                )
            elif is_service and index.is_stack(rule):
                yield from _service_subset(index, rule, target, i, name, wanted, version_path)


def _strings(labels: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(labels).items()}


def _service_subset(
    index: _Index,
    rule: dict[str, Any],
    service: dict[str, Any],
    i: int,
    name: str,
    labels: dict[str, str],
    version_path: str | None,
) -> Iterator[Finding]:
    """MESH0012: a subset of the stack whose pods are not behind the Service."""
    selector = _strings(_spec(service).get("selector"))
    if not selector:
        return  # endpoints managed by hand: no selector to compare with
    wanted = {**selector, **labels}
    if not index.pods_matching(index.ns(service), wanted):
        yield _finding(
            index,
            rule,
            SELECTS_NOTHING,
            "error",
            version_path,
            f"spec.subsets[{i}] {name!r} selects pods, but none of Service "
            f"{index.ns(service)}/{_name(service)} (labels {wanted}): "
            "its endpoints are the Service's pods, so routes to it would fail with 503 "
            "(istioctl analyze does not see this: it matches the subset's labels alone)",
        )
