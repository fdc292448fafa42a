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


# A model with pools (mesh/gatewayapi/routes.py): `chat` on the model Service to the version
# Services, `chat-pools` on the Gateway to the versions' InferencePools.
def _ref(kind: str, name: str, weight: int) -> dict:
    group = "inference.networking.k8s.io" if kind == "InferencePool" else ""
    return {"group": group, "kind": kind, "name": name, "weight": weight}


def _route(name: str, parent: str, refs: list[dict], **extra: dict) -> dict:
    rule = {"name": "http", "matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}
    return {
        "kind": "HTTPRoute",
        "metadata": {"name": name, "labels": {"app": "chat"}},
        "spec": {
            "parentRefs": [{"group": "", "kind": parent, "name": "chat"}],
            "hostnames": ["chat.example.com"],
            "rules": [{**rule, "backendRefs": refs, **extra}],
        },
    }


def _selecting(kind: str, name: str, version: str) -> dict:
    selector = {"app": "chat", "version": version}
    spec = {"selector": {"matchLabels": selector} if kind == "InferencePool" else selector}
    return {"kind": kind, "metadata": {"name": name}, "spec": spec}


def _pool_objects(mesh: tuple[int, int], ingress: tuple[int, int], pools: list[dict]) -> list:
    return [
        _route(
            "chat",
            "Service",
            [_ref("Service", f"chat-v{i}", w) for i, w in ((1, mesh[0]), (2, mesh[1]))],
        ),
        _route(
            "chat-pools",
            "Gateway",
            [
                _ref("InferencePool", p, w)
                for p, w in (("pool-a", ingress[0]), ("pool-b", ingress[1]))
            ],
        ),
        _selecting("Service", "chat-v1", "v1"),
        _selecting("Service", "chat-v2", "v2"),
        *pools,
    ]


def test_a_pool_model_is_routed_as_the_ingress_routes_it():
    """The pool route's weights, versions named by the InferencePools' selectors; the mesh
    route does not add a model of its own."""
    pools = [
        _selecting("InferencePool", "pool-a", "v1"),
        _selecting("InferencePool", "pool-b", "v2"),
    ]
    routing = routing_from_objects(_pool_objects((90, 10), (75, 25), pools))
    assert list(routing) == ["chat"]
    assert {v: r.weight for v, r in routing["chat"].versions.items()} == {"v1": 75.0, "v2": 25.0}
    assert routing["chat"].hosts == ("chat.example.com",)


def test_without_inferencepool_objects_a_pool_names_its_version_by_prefix():
    """Render's objects hold no InferencePool (the chart creates it): `<m>-<v>` names `v`. A
    version the mesh route knows and the pool route does not is listed, unrouted."""
    objects = _pool_objects((90, 10), (75, 25), [])
    routing = routing_from_objects(objects)["chat"]
    assert {v: r.weight for v, r in routing.versions.items()} == {
        "pool-a": 75.0,
        "pool-b": 25.0,
        "v1": 0.0,
        "v2": 0.0,
    }
    objects[1]["spec"]["rules"][0]["backendRefs"] = [
        _ref("InferencePool", "chat-v1", 3),
        _ref("InferencePool", "chat-v2", 1),
    ]
    routing = routing_from_objects(objects)["chat"]
    assert {v: r.weight for v, r in routing.versions.items()} == {"v1": 75.0, "v2": 25.0}


def test_a_pool_route_s_mirror_names_the_version_service():
    mirror = {
        "type": "RequestMirror",
        "requestMirror": {"backendRef": {"name": "chat-v2", "port": 8000}, "percent": 5},
    }
    objects = _pool_objects((100, 0), (100, 0), [])
    objects[1]["spec"]["rules"][0]["filters"] = [mirror]
    objects[1]["spec"]["rules"][0]["backendRefs"] = [_ref("InferencePool", "chat-v1", 1)]
    routing = routing_from_objects(objects)["chat"]
    assert routing.versions["v2"] == VersionRouting(0.0, (), 5.0)
    assert routing.versions["v1"].weight == 100.0
