"""The validator (tests/conformance.py) on Gateway API and Inference Extension kinds.

Hand-written objects in the shapes ml-mesh renders (common mistakes from
../shared/gateway-api/SOURCE.md "Rules users commonly trip on"): each valid one passes, each
mistake fails with the message of the rule or schema the API server would answer with. Every
rule of the CEL rule lists compiles and calls only functions the validator implements, so none
is skipped silently; only the transition rules (oldSelf) are skipped on create, by name.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import conformance
from tests.conftest import shared_path

V1 = "gateway.networking.k8s.io/v1"


@pytest.fixture(autouse=True)
def _reference_data():
    shared_path("gateway-api")
    shared_path("inference-extension")


def gateway() -> dict[str, Any]:
    """The ingress Gateway of the agreed shape: http and https (Terminate) listeners."""
    allowed = {
        "namespaces": {
            "from": "Selector",
            "selector": {"matchLabels": {"kubernetes.io/metadata.name": "ml-serving"}},
        },
        "kinds": [{"kind": "HTTPRoute"}],
    }
    tls = {
        "mode": "Terminate",
        "certificateRefs": [{"group": "", "kind": "Secret", "name": "models-example-com-tls"}],
    }
    return {
        "apiVersion": V1,
        "kind": "Gateway",
        "metadata": {"name": "ml-gateway", "namespace": "istio-ingress"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP", "allowedRoutes": allowed},
                {
                    "name": "https",
                    "port": 443,
                    "protocol": "HTTPS",
                    "tls": tls,
                    "allowedRoutes": allowed,
                },
            ],
        },
    }


def route() -> dict[str, Any]:
    """A model's HTTPRoute: ingress and mesh (GAMMA) parents, a header rule, the weighted
    default rule with a mirror and a timeout."""
    backend = {"name": "sentiment-v4", "port": 8501}
    return {
        "apiVersion": V1,
        "kind": "HTTPRoute",
        "metadata": {"name": "sentiment", "namespace": "ml-serving"},
        "spec": {
            "parentRefs": [
                {"name": "ml-gateway", "namespace": "istio-ingress", "sectionName": "https"},
                {"group": "", "kind": "Service", "name": "sentiment"},
            ],
            "hostnames": ["sentiment.models.example.com"],
            "rules": [
                {
                    "matches": [{"headers": [{"name": "x-canary", "value": "always"}]}],
                    "backendRefs": [dict(backend)],
                },
                {
                    "backendRefs": [
                        {"name": "sentiment-v3", "port": 8501, "weight": 90},
                        {**backend, "weight": 10},
                    ],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": dict(backend), "percent": 5},
                        }
                    ],
                    "timeouts": {"request": "30s"},
                },
            ],
        },
    }


def redirect() -> dict[str, Any]:
    return {
        "apiVersion": V1,
        "kind": "HTTPRoute",
        "metadata": {"name": "ml-gateway-https-redirect", "namespace": "istio-ingress"},
        "spec": {
            "parentRefs": [{"name": "ml-gateway", "sectionName": "http"}],
            "hostnames": ["sentiment.models.example.com"],
            "rules": [
                {
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ]
                }
            ],
        },
    }


def inference_pool() -> dict[str, Any]:
    return {
        "apiVersion": "inference.networking.k8s.io/v1",
        "kind": "InferencePool",
        "metadata": {"name": "llm", "namespace": "ml-serving"},
        "spec": {
            "selector": {"matchLabels": {"app": "llm"}},
            "targetPorts": [{"number": 8000}],
            "endpointPickerRef": {"name": "llm-epp", "port": {"number": 9002}},
        },
    }


def _set(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `obj` with `path` (`spec.rules.1.timeouts`) set; `value` None deletes it."""
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    key = int(last) if isinstance(node, list) else last
    if value is None:
        del node[key]
    else:
        node[key] = value
    return out


def _problems(obj: dict[str, Any], channel: str = "standard") -> list[str]:
    return conformance.problems(obj, gateway_api_channel=channel)


REFERENCE_GRANT = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "routes-to-models", "namespace": "ml-models"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "a"}],
        "to": [{"group": "", "kind": "Service"}],
    },
}

VALID = [
    # (what, object, channel)
    ("ingress Gateway, http + https", gateway(), "standard"),
    ("model HTTPRoute, ingress + mesh parents", route(), "standard"),
    ("https redirect: a RequestRedirect rule without backendRefs", redirect(), "standard"),
    (
        "parentRefs to one Gateway, each with its own sectionName",
        _set(
            route(),
            "spec.parentRefs",
            [
                {"name": "ml-gateway", "namespace": "istio-ingress", "sectionName": "http"},
                {"name": "ml-gateway", "namespace": "istio-ingress", "sectionName": "https"},
            ],
        ),
        "standard",
    ),
    (
        # `namespace` is `__namespace__` in the rule: two Gateways of one name in two
        # namespaces are two parents, no sectionName needed.
        "same parent name in two namespaces (rule reads __namespace__)",
        _set(
            route(),
            "spec.parentRefs",
            [{"name": "ml-gateway", "namespace": "a"}, {"name": "ml-gateway", "namespace": "b"}],
        ),
        "standard",
    ),
    (
        "retry on the experimental channel",
        _set(route(), "spec.rules.1.retry", {"attempts": 2, "codes": [503]}),
        "experimental",
    ),
    ("ReferenceGrant v1beta1 (storage version)", REFERENCE_GRANT, "standard"),
    (
        # The API server defaults `type: IPAddress` before the oneOf is checked.
        "Gateway address without type (schema default before oneOf)",
        _set(gateway(), "spec.addresses", [{"value": "10.0.0.1"}]),
        "standard",
    ),
    ("InferencePool with an endpoint picker", inference_pool(), "standard"),
    (
        "HTTPRoute to an InferencePool: no port (not a Service reference)",
        _set(
            route(),
            "spec.rules.1.backendRefs",
            [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "llm"}],
        ),
        "standard",
    ),
]


@pytest.mark.parametrize(("obj", "channel"), [v[1:] for v in VALID], ids=[v[0] for v in VALID])
def test_valid_gateway_api_objects_pass(obj, channel):
    assert _problems(obj, channel) == []


MISTAKES = [
    # (what, object, channel, a phrase of the expected problem)
    (
        "Service backendRef without port (group/kind defaulted to core Service)",
        _set(route(), "spec.rules.1.backendRefs.0.port", None),
        "standard",
        ".spec.rules[1].backendRefs[0]: Must have port for Service reference",
    ),
    (
        "mirror backendRef without port",
        _set(route(), "spec.rules.1.filters.0.requestMirror.backendRef.port", None),
        "standard",
        "requestMirror.backendRef: Must have port for Service reference",
    ),
    (
        "RequestRedirect beside backendRefs",
        _set(
            route(),
            "spec.rules.1.filters",
            [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}],
        ),
        "standard",
        "RequestRedirect filter must not be used together with backendRefs",
    ),
    (
        "duplicate listener names",
        _set(gateway(), "spec.listeners.1.name", "http"),
        "standard",
        "Listener name must be unique within the Gateway",
    ),
    (
        "duplicate listener names (list-map key, before CEL)",
        _set(gateway(), "spec.listeners.1.name", "http"),
        "standard",
        '.spec.listeners[1]: Duplicate value: {"name": "http"}',
    ),
    (
        "duplicate header match names (list-map key)",
        _set(
            route(),
            "spec.rules.0.matches.0.headers",
            [{"name": "x-canary", "value": "a"}, {"name": "x-canary", "value": "b"}],
        ),
        "standard",
        "Duplicate value",
    ),
    (
        "timeout 1.5s (Gateway API durations have no fractions)",
        _set(route(), "spec.rules.1.timeouts.request", "1.5s"),
        "standard",
        "'1.5s' does not match",
    ),
    (
        "backendRequest longer than request",
        _set(route(), "spec.rules.1.timeouts", {"request": "10s", "backendRequest": "30s"}),
        "standard",
        "backendRequest timeout cannot be longer than request timeout",
    ),
    (
        # tls.mode defaults to Terminate; `size(self.certificateRefs)` on an absent field is an
        # evaluation error, which the API server rejects.
        "HTTPS listener without certificateRefs",
        _set(gateway(), "spec.listeners.1.tls", {"mode": "Terminate"}),
        "standard",
        "certificateRefs or options must be specified when mode is Terminate",
    ),
    (
        "HTTPS listener with Passthrough",
        _set(gateway(), "spec.listeners.1.tls", {"mode": "Passthrough"}),
        "standard",
        "tls mode must be Terminate for protocol HTTPS",
    ),
    (
        "tls on an HTTP listener",
        _set(gateway(), "spec.listeners.0.tls", gateway()["spec"]["listeners"][1]["tls"]),
        "standard",
        "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
    ),
    (
        # Both unset is "the same section" to the rules: the uniqueness rule answers.
        "two parentRefs to the same Gateway without sectionName",
        _set(
            route(),
            "spec.parentRefs",
            [{"name": "ml-gateway", "namespace": "istio-ingress"}] * 2,
        ),
        "standard",
        "sectionName must be unique when parentRefs includes 2 or more references",
    ),
    (
        "two parentRefs to the same Gateway, only one with sectionName",
        _set(
            route(),
            "spec.parentRefs",
            [
                {"name": "ml-gateway", "namespace": "istio-ingress"},
                {"name": "ml-gateway", "namespace": "istio-ingress", "sectionName": "https"},
            ],
        ),
        "standard",
        "sectionName must be specified when parentRefs includes 2 or more references",
    ),
    (
        "two parentRefs to the same Gateway with the same sectionName",
        _set(
            route(),
            "spec.parentRefs",
            [{"name": "ml-gateway", "namespace": "istio-ingress", "sectionName": "https"}] * 2,
        ),
        "standard",
        "sectionName must be unique when parentRefs includes 2 or more references",
    ),
    (
        "retry on the standard channel (experimental-only field)",
        _set(route(), "spec.rules.1.retry", {"attempts": 2}),
        "standard",
        "'retry' was unexpected",
    ),
    (
        "mirror with both percent and fraction",
        _set(
            route(),
            "spec.rules.1.filters.0.requestMirror.fraction",
            {"numerator": 1, "denominator": 10},
        ),
        "standard",
        "Only one of percent or fraction may be specified",
    ),
    (
        "PathPrefix with //",
        _set(route(), "spec.rules.0.matches.0.path", {"type": "PathPrefix", "value": "/v1//x"}),
        "standard",
        "must not contain '//'",
    ),
    (
        "weight above 1000000",
        _set(route(), "spec.rules.1.backendRefs.0.weight", 1000001),
        "standard",
        "1000001 is greater than the maximum",
    ),
    (
        "TLSRoute hostname that is an IP (isIP)",
        {
            "apiVersion": V1,
            "kind": "TLSRoute",
            "metadata": {"name": "t", "namespace": "ml-serving"},
            "spec": {
                "parentRefs": [{"name": "ml-gateway"}],
                "hostnames": ["10.0.0.1"],
                "rules": [{"backendRefs": [{"name": "s", "port": 443}]}],
            },
        },
        "standard",
        "Hostnames cannot contain an IP",
    ),
    (
        "annotation key prefix of the Gateway infrastructure (split)",
        _set(gateway(), "spec.infrastructure.annotations", {"a" * 253 + "/x": "1"}),
        "standard",
        "prefix must be a DNS subdomain not longer than 253 characters",
    ),
    (
        "InferencePool endpoint picker Service without port",
        _set(inference_pool(), "spec.endpointPickerRef.port", None),
        "standard",
        "port is required when kind is 'Service' or unspecified",
    ),
    (
        "InferencePool duplicate target ports",
        _set(inference_pool(), "spec.targetPorts", [{"number": 8000}, {"number": 8000}]),
        "standard",
        "port number must be unique",
    ),
    (
        "XBackend on the standard channel",
        {
            "apiVersion": "gateway.networking.x-k8s.io/v1alpha1",
            "kind": "XBackend",
            "metadata": {"name": "x", "namespace": "n"},
            "spec": {},
        },
        "standard",
        "Gateway API v1.6.1 (standard channel) serves no such kind and version",
    ),
]


@pytest.mark.parametrize(
    ("obj", "channel", "phrase"), [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES]
)
def test_common_mistakes_fail_with_the_rules_message(obj, channel, phrase):
    found = _problems(obj, channel)
    assert any(phrase in problem for problem in found), found


def test_a_mesh_parent_without_group_is_accepted_by_the_api_server_and_ignored_by_istio():
    """There is no CEL rule for it: `group` defaults to gateway.networking.k8s.io, and kind
    Service in that group is a valid (pattern-matching) kind. The API server stores it; Istio's
    `toInternalParentReference` (pilot/pkg/config/kube/gateway/conversion.go, 1.30.3) answers
    "unsupported parent" and `extractParentReferenceInfo` skips the reference silently, so mesh
    callers never get the route. `mesh check` reports it (mesh.checks.gateway_api)."""
    mesh_parent = {"kind": "Service", "name": "sentiment"}
    obj = _set(route(), "spec.parentRefs.1", mesh_parent)
    assert _problems(obj) == []
    schema = conformance._load(conformance.crd_source(obj).schema)
    defaulted = conformance.with_defaults(obj, schema)
    assert defaulted["spec"]["parentRefs"][1]["group"] == "gateway.networking.k8s.io"


def test_an_https_listener_without_any_tls_block_is_left_to_the_controller():
    """No rule requires `tls` on HTTPS (the rules only judge a `tls` that is there): the API
    server accepts it and the Gateway's listener is then refused by the controller."""
    assert _problems(_set(gateway(), "spec.listeners.1.tls", None)) == []


def test_an_evaluation_error_is_a_failure_naming_the_cause():
    obj = _set(gateway(), "spec.listeners.1.tls", {"mode": "Terminate"})
    (problem,) = [p for p in _problems(obj) if "certificateRefs" in p]
    assert "the rule failed to evaluate" in problem and "certificateRefs" in problem


def test_transition_rules_are_skipped_on_create_and_say_so():
    gateway_class = {
        "apiVersion": V1,
        "kind": "GatewayClass",
        "metadata": {"name": "istio"},
        "spec": {"controllerName": "istio.io/gateway-controller"},
    }
    assert _problems(gateway_class) == []
    verdicts = conformance.cel_verdicts(gateway_class)
    skipped = [v for v in verdicts if v.skipped]
    assert [v.where for v in skipped] == [".spec.controllerName"]
    assert "oldSelf" in skipped[0].rule.rule and "on create" in skipped[0].skipped


def test_experimental_kinds_evaluate_the_format_library():
    backend = {
        "apiVersion": "gateway.networking.x-k8s.io/v1alpha1",
        "kind": "XBackend",
        "metadata": {"name": "x", "namespace": "n"},
        "spec": {"port": {"name": "Bad_Name", "number": 80}, "destination": {}},
    }
    verdicts = conformance.cel_verdicts(backend, "experimental")
    port_name = [v for v in verdicts if "dns1123Label" in v.rule.rule]
    assert port_name and all(v.verdict is False for v in port_name), port_name


# --- every rule is one the validator can evaluate ------------------------------------------


def _rule_lists() -> list[tuple[str, tuple[dict[str, str], ...], str]]:
    return [
        (
            "gateway-api standard",
            conformance.gateway_api_cel_rules("standard"),
            "gateway-api/schemas-strict/standard",
        ),
        (
            "gateway-api experimental",
            conformance.gateway_api_cel_rules("experimental"),
            "gateway-api/schemas-strict/experimental",
        ),
        (
            "inference-extension",
            conformance.inference_cel_rules(),
            "inference-extension/schemas-strict",
        ),
    ]


def test_every_rule_compiles_and_calls_only_implemented_functions():
    known = conformance.known_cel_functions()
    sizes = {}
    for name, rules, _ in _rule_lists():
        sizes[name] = len(rules)
        missing = {
            (r["kind"], r["path"], fn)
            for r in rules
            for fn in conformance.functions_called(r["rule"]) - known
        }
        assert missing == set(), name
    # SOURCE.md: 272 standard, 350 experimental entries; the inference extension has 2.
    assert sizes == {
        "gateway-api standard": 272,
        "gateway-api experimental": 350,
        "inference-extension": 2,
    }


def test_every_rule_path_exists_in_its_kinds_schema():
    """A rule whose path is not in the schema would never be evaluated: a silent skip."""
    for _, rules, root in _rule_lists():
        for rule in rules:
            path = shared_path(
                *root.split("/"), rule["group"], rule["version"], f"{rule['kind']}.json"
            )
            node = conformance._load(path)
            for name, suffix in conformance.CelRule(rule["path"], "", "").steps():
                node = node["properties"][name]
                if suffix:
                    node = node["items" if suffix == "[]" else "additionalProperties"]
            assert any(v["rule"] == rule["rule"] for v in node["x-kubernetes-validations"]), rule


def test_only_the_oldself_rules_are_transition_rules():
    """SOURCE.md: 2 oldSelf entries in standard, 3 in experimental; none elsewhere."""
    counts = {
        name: sum("oldSelf" in conformance._identifiers(r["rule"]) for r in rules)
        for name, rules, _ in _rule_lists()
    }
    assert counts == {
        "gateway-api standard": 2,
        "gateway-api experimental": 3,
        "inference-extension": 0,
    }


def test_the_valid_objects_exercise_rules_of_every_kind_they_are():
    """The valid table is not vacuous: each object had rules evaluated, all True."""
    for what, obj, channel in VALID:
        if obj["kind"] == "ReferenceGrant":
            continue  # ReferenceGrant has no CEL rules
        verdicts = conformance.cel_verdicts(obj, channel)
        assert verdicts and all(v.verdict is True for v in verdicts), what
