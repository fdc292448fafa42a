"""Routes reach something (IST0101, IST0112) and DestinationRule subsets select pods (IST0173,
IST0174).

A VirtualService destination must name a host this stack serves, a port its Service exposes
and a subset a DestinationRule defines, and each subset must select pods; otherwise requests
fail with 503 after `pulumi up`, though every object passes its schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import (
    DESTINATION_PORT_SELECTOR_REQUIRED,
    REFERENCED_RESOURCE_NOT_FOUND,
    SUBSET_SELECTS_NO_PODS,
    UNKNOWN_DESTINATION_RULE_HOST,
    Finding,
)
from mesh.checks.index import _Index
from mesh.checks.objects import _destinations, _dict, _list, _routes, _spec, fqdn
from mesh.checks.paths import _finding, _model_path, _subset_path


def virtual_service_destinations(index: _Index) -> Iterator[Finding]:
    for vs in index.by_kind["VirtualService"]:
        namespace = index.ns(vs)
        for at, route in _routes(_spec(vs)):
            for where, destination in _destinations(route):
                where = f"spec.{at}.{where}"
                host = fqdn(str(destination.get("host", "")), namespace)
                target = index.resolves(host)
                if target is None:
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _model_path(index, vs),
                        f"{where} routes to host {host}, which is no Service or ServiceEntry "
                        "of this stack",
                    )
                    continue
                yield from _destination_port(index, vs, where, host, target, destination)
                subset = destination.get("subset")
                if subset is not None and subset not in index.subsets.get(host, ()):
                    yield _finding(
                        index,
                        vs,
                        REFERENCED_RESOURCE_NOT_FOUND,
                        "error",
                        _subset_path(index, vs, str(subset)),
                        f"{where} routes to subset {subset!r} of {host}, which no "
                        "DestinationRule defines: requests would fail with 503",
                    )


def _destination_port(
    index: _Index,
    vs: dict[str, Any],
    where: str,
    host: str,
    target: dict[str, Any],
    destination: dict[str, Any],
) -> Iterator[Finding]:
    if target.get("kind") != "Service":
        return
    ports = {p.get("port") for p in map(_dict, _list(_spec(target).get("ports")))}
    number = _dict(destination.get("port")).get("number")
    if number is None and len(ports) > 1:
        yield _finding(
            index,
            vs,
            DESTINATION_PORT_SELECTOR_REQUIRED,
            "error",
            _model_path(index, vs),
            f"{where}: {host} has {len(ports)} ports, so the destination must name one",
        )
    elif number is not None and number not in ports:
        yield _finding(
            index,
            vs,
            REFERENCED_RESOURCE_NOT_FOUND,
            "error",
            _model_path(index, vs, "server"),
            f"{where} routes to port {number} of {host}, which the Service does not expose "
            f"(ports: {', '.join(map(str, sorted(ports, key=str)))})",
        )


def destination_rule_subsets(index: _Index) -> Iterator[Finding]:
    for rule in index.by_kind["DestinationRule"]:
        host = fqdn(str(_spec(rule).get("host", "")), index.ns(rule))
        target = index.resolves(host)
        if target is None:
            yield _finding(
                index,
                rule,
                UNKNOWN_DESTINATION_RULE_HOST,
                "warning",
                _model_path(index, rule),
                f"host {host} is no Service or ServiceEntry of this stack",
            )
            continue
        if target.get("kind") != "Service":
            continue
        selector = {str(k): str(v) for k, v in _dict(_spec(target).get("selector")).items()}
        for i, subset in enumerate(map(_dict, _list(_spec(rule).get("subsets")))):
            name = str(subset.get("name"))
            labels = {str(k): str(v) for k, v in _dict(subset.get("labels")).items()}
            wanted = {**selector, **labels}
            replicas = index.pods_matching(index.ns(target), wanted)
            version_path = _model_path(index, rule, "versions", name)
            if not replicas:
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "error",
                    version_path,
                    f"spec.subsets[{i}] {name!r} selects no pods of any Deployment "
                    f"(labels {wanted}): routes to it would fail with 503",
                )
            elif not any(r != 0 for r in replicas):
                yield _finding(
                    index,
                    rule,
                    SUBSET_SELECTS_NO_PODS,
                    "warning",
                    f"{version_path}.replicas" if version_path else None,
                    f"spec.subsets[{i}] {name!r} selects only Deployments scaled to 0 replicas: "
                    "istioctl analyze reports this once deployed; harmless while no route "
                    "sends traffic to it",
                )
