"""Second reading of issue 12's match and workload-policy analyzers against Istio 1.30.3: each
test pins a case where ml-mesh disagreed with istiod's validation or Istio's analyzers."""

from __future__ import annotations

import copy

import pytest
import yaml

from mesh.checks import check
from mesh.checks.matches import as_json
from mesh.checks.objects import _name
from mesh.plan import build_plan
from tests.test_live_policies import BASE, NS, _config, _entry, _obj, _route_findings


@pytest.fixture(scope="module")
def prod():
    config = _config()
    return config, build_plan(config).objects()


def test_an_empty_string_match_is_a_presence_condition_not_an_absent_field():
    """`headers: {x: {}}` checks the header is present (HTTPMatchRequest docs); istiod's
    `asJSON` serialises the set, empty StringMatch (istio.io/api's jsonpb MarshalJSON keeps set
    messages and every map entry), so it is another match than one without the header."""
    present = as_json({"headers": {"x-debug": {}}}, http=True)
    assert present != as_json({"headers": {"x-canary": {}}}, http=True)
    assert present != as_json({}, http=True)
    assert as_json({"withoutHeaders": {"x": {}}}, True) != as_json(
        {"withoutHeaders": {"y": {}}}, True
    )
    assert as_json({"uri": {}}, http=True) != as_json({}, http=True)
    # still alike: empty maps and zero scalars, which jsonpb omits
    assert as_json({"headers": {}, "port": 0, "name": "a"}, http=True) == as_json({}, http=True)


def test_rules_on_the_presence_of_different_headers_are_both_reachable():
    vs = _obj(
        "VirtualService",
        "debug-route",
        "team-b",
        {
            "hosts": ["web"],
            "http": [
                {
                    "match": [{"headers": {"x-debug": {}}}],
                    "route": [{"destination": {"host": "debug"}}],
                },
                {
                    "match": [{"headers": {"x-canary": {}}}],
                    "route": [{"destination": {"host": "canary"}}],
                },
                {"route": [{"destination": {"host": "web"}}]},
            ],
        },
    )
    assert _route_findings(yaml.safe_dump(vs)) == []


def test_a_stack_service_entry_already_live_is_the_older_one_for_istiod(prod):
    """pulumi up updates the live `model-store`, which keeps its creationTimestamp, so istiod
    (push_context.go `initServiceRegistry`, oldest first) keeps it over a newer entry of the
    same host in the namespace: a warning for the stack, not an error."""
    config, objects = prod
    (store,) = [o for o in objects if o["kind"] == "ServiceEntry" and _name(o) == "model-store"]
    live = copy.deepcopy(store)
    live["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    newer = _entry("s3", NS, "HTTPS")  # 2025: created after the stack's entry
    findings = check(config, objects, cluster=copy.deepcopy([*BASE, live, newer]))
    assert [(f.severity, f.code) for f in findings if f.code == "MESH0005"] == [
        ("warning", "MESH0005")
    ]


def test_sidecars_of_an_ambient_namespace_are_ineffective_not_conflicting(prod):
    ambient = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "amb", "labels": {"istio.io/dataplane-mode": "ambient"}},
    }
    sidecars = [_obj("Sidecar", name, "amb", {"egress": [{"hosts": ["./*"]}]}) for name in "ab"]
    config, objects = prod
    findings = check(config, objects, cluster=copy.deepcopy([*BASE, ambient, *sidecars]))
    assert sorted(
        (f.code, f.resource) for f in findings if f.resource.startswith("Sidecar amb")
    ) == [
        ("IST0167", "Sidecar amb/a"),
        ("IST0167", "Sidecar amb/b"),
    ]
