"""Reading the routing back from rendered objects, the way `mesh diff` sees both sides."""

from __future__ import annotations

from mesh.routing import VersionRouting, routing_from_objects


def _vs(http: list[dict]) -> dict:
    return {
        "kind": "VirtualService",
        "metadata": {"name": "m"},
        "spec": {"hosts": ["m.example.com", "m.ns.svc.cluster.local"], "http": http},
    }


def _to(subset: str, weight: int | None = None) -> dict:
    destination = {"destination": {"host": "m.ns.svc.cluster.local", "subset": subset}}
    return destination if weight is None else {**destination, "weight": weight}


def test_weights_are_relative_shares_and_a_lone_destination_takes_everything():
    (routing,) = routing_from_objects([_vs([{"route": [_to("a", 1), _to("b", 3)]}])]).values()
    assert routing.versions == {"a": VersionRouting(25.0), "b": VersionRouting(75.0)}
    assert routing.hosts == ("m.example.com",)
    (routing,) = routing_from_objects([_vs([{"route": [_to("a")]}])]).values()
    assert routing.versions == {"a": VersionRouting(100.0)}


def test_routes_selected_by_another_port_are_not_the_gateway_routes():
    http = [
        {"match": [{"port": 8500}], "route": [_to("grpc-only")]},
        {"match": [{"name": "beta", "headers": {"x": {"exact": "1"}}}], "route": [_to("b")]},
        {
            "route": [_to("a")],
            "mirror": {"host": "m", "subset": "c"},  # no percentage: Istio mirrors 100%
        },
    ]
    (routing,) = routing_from_objects([_vs(http)]).values()
    assert set(routing.versions) == {"a", "b", "c"}
    assert routing.versions["b"].matches == ("beta",)
    assert routing.versions["c"].mirror == 100.0
    assert routing.routed() == {
        "a": "receives 100% of traffic",
        "b": "receives the requests of match rule 'beta'",
        "c": "receives 100% mirrored traffic",
    }
