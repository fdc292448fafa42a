"""Second reading of issue 12's match and workload-policy analyzers against Istio 1.30.3: each
test pins a case where ml-mesh disagreed with istiod's validation or Istio's analyzers."""

from __future__ import annotations

import yaml

from mesh.checks.matches import as_json
from tests.test_live_policies import _obj, _route_findings


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
