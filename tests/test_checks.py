"""Mesh analyzers (mesh/checks/): each rule fires on the mistake it exists for, names the IST
code and the config path behind it, and stays quiet on every stack the project ships.

Config validation already prevents most of these mistakes, so most tests break a rendered plan
by hand, the way a builder bug would.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import Any

import pulumi
import pytest

from mesh import checks, cli
from mesh.checks import Finding, check, parse_duration
from mesh.config import parse_config
from mesh.plan import build_plan
from mesh.stackfile import load_stack
from mesh.traffic import destination_rule, virtual_service
from tests.conftest import PROJECT_DIR, STACK_SOURCES, source_id, stack_raw, with_value
from tests.harness import try_program

Objects = list[dict[str, Any]]


# The images of the shipped protected stacks that still have no digest: none could be read from
# a registry when they were pinned, and a digest not read from one would be a fake (docs/security.md
# "Images pinned by digest"). Their MESH0003 warnings are expected; pinning one empties its entry.
TAG_ONLY_IMAGES = {
    "prod": {
        "images.modelFetcher",
        "models.sentiment.versions.v3.image",
        "models.sentiment.versions.v4.image",
        "models.fraud.versions.v7.image",
    },
    "examples/prod-like": {
        "images.modelFetcher",
        "models.ranking.versions.v11.image",
        "models.ranking.versions.v12.image",
        "models.embeddings.versions.v4.image",
    },
    # examples/prod-like with routing gateway-api: the same images.
    "examples/sidecar-gateway-api": {
        "images.modelFetcher",
        "models.ranking.versions.v11.image",
        "models.ranking.versions.v12.image",
        "models.embeddings.versions.v4.image",
    },
    # The LLM example: vLLM and SGLang release images, tag only like prod-like's.
    "examples/llm": {
        "models.chat.versions.v1.image",
        "models.chat.versions.v2.image",
        "models.coder.versions.v3.image",
    },
    # The LLM example with inference pools: the same, and the pickers' image (the chart's).
    "examples/llm-pools": {
        "models.chat.versions.v1.image",
        "models.chat.versions.v2.image",
        "models.coder.versions.v3.image",
        "images.endpointPicker",
    },
}
# The ambient examples are prod-like's stack on another data plane (and routing): same images.
for _ambient in ("examples/ambient-istio", "examples/ambient-gateway-api"):
    TAG_ONLY_IMAGES[_ambient] = TAG_ONLY_IMAGES["examples/prod-like"]


# Protected ambient stacks: egress open on 443 to any address (no REGISTRY_ONLY at ztunnel),
# one MESH0025 warning per model's egress NetworkPolicy.
OPEN_EGRESS = {
    "examples/ambient-istio": {
        "NetworkPolicy ml-prod/embeddings-egress",
        "NetworkPolicy ml-prod/ranking-egress",
    },
    "examples/ambient-gateway-api": {
        "NetworkPolicy ml-prod/embeddings-egress",
        "NetworkPolicy ml-prod/ranking-egress",
    },
}


@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_every_shipped_stack_passes_every_check_without_a_finding(source):
    """None but the MESH0003 warning of each image listed in TAG_ONLY_IMAGES, and the
    MESH0025 warning of each protected ambient stack's open egress (OPEN_EGRESS). Checked as
    the program checks: with the objects the charts create (Plan.cluster_objects)."""
    config = load_stack(source).config
    findings = check(config, build_plan(config).cluster_objects())
    images = [f for f in findings if f.code == "MESH0003"]
    egress = [f for f in findings if f.code == "MESH0025"]
    assert {(f.code, f.severity) for f in findings} <= {
        ("MESH0003", "warning"),
        ("MESH0025", "warning"),
    }, findings
    assert {f.path for f in images} == TAG_ONLY_IMAGES.get(source_id(source), set())
    assert {f.resource for f in egress} == OPEN_EGRESS.get(source_id(source), set())
    assert {f.path for f in egress} <= {"security.restrictEgress"}


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod_plan():
    """prod with every image pinned by digest, so the Istio rules below start from no finding
    (the tag-only images of the shipped prod are tested on their own, under MESH0003)."""
    config = parse_config(_pinned(stack_raw("prod")), "prod")
    return config, build_plan(config).objects()


def _find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def findings_after(prod_plan, edit: Callable[[Objects], Any]) -> list[Finding]:
    config, objects = prod_plan
    objects = copy.deepcopy(objects)
    edit(objects)
    return check(config, objects)


def only(findings: list[Finding], code: str) -> Finding:
    """The finding of `code` (one per affected route or port, all with one severity and path);
    no other code may be present."""
    assert {f.code for f in findings} == {code}, findings
    assert len({(f.severity, f.path) for f in findings}) == 1, findings
    return findings[0]


def _vs(objects: Objects) -> dict[str, Any]:
    return _find(objects, "VirtualService", "sentiment")


def _dr(objects: Objects) -> dict[str, Any]:
    return _find(objects, "DestinationRule", "sentiment")


def _gateway(objects: Objects) -> dict[str, Any]:
    return _find(objects, "Gateway", "ml-gateway")


def _first_destination(objects: Objects) -> dict[str, Any]:
    return _vs(objects)["spec"]["http"][0]["route"][0]["destination"]


# --- IST0101 / IST0112: VirtualService destinations --------------------------------------------


def test_route_to_a_subset_no_destination_rule_defines_names_the_canary_version(prod_plan):
    def drop_canary_subset(objects):
        _dr(objects)["spec"]["subsets"] = [
            s for s in _dr(objects)["spec"]["subsets"] if s["name"] != "v4"
        ]

    finding = only(findings_after(prod_plan, drop_canary_subset), "IST0101")
    assert (finding.severity, finding.path) == ("error", "models.sentiment.canary.version")
    assert "subset 'v4'" in finding.message and "503" in finding.message
    assert finding.resource == "VirtualService ml-serving/sentiment"


def test_route_to_a_missing_stable_subset_names_the_stable_key(prod_plan):
    def rename_stable_subset(objects):
        _dr(objects)["spec"]["subsets"][0]["name"] = "v3-old"

    findings = findings_after(prod_plan, rename_stable_subset)
    routes = [f for f in findings if f.code == "IST0101"]
    assert routes and {f.path for f in routes} == {"models.sentiment.stable"}


def test_route_to_a_host_that_is_no_service_or_service_entry(prod_plan):
    def retarget(objects):
        for route in _vs(objects)["spec"]["http"]:
            for target in route["route"]:
                target["destination"]["host"] = "sentimnet.ml-serving.svc.cluster.local"

    findings = [f for f in findings_after(prod_plan, retarget) if f.code == "IST0101"]
    hosts = [f for f in findings if f.message.startswith("Referenced host not found")]
    assert hosts and all(f.path == "models.sentiment" for f in hosts)
    assert "sentimnet.ml-serving.svc.cluster.local" in hosts[0].message
    # Istio's DestinationRuleAnalyzer runs on its own: the subsets are not found either
    assert {f.path for f in findings} - {f.path for f in hosts} == {
        "models.sentiment.stable",
        "models.sentiment.canary.version",
    }


def test_route_to_a_port_the_service_does_not_expose(prod_plan):
    def wrong_port(objects):
        _first_destination(objects)["port"]["number"] = 8080

    finding = only(findings_after(prod_plan, wrong_port), "IST0101")
    assert finding.path == "models.sentiment.server"
    assert "port 8080" in finding.message and "8500, 8501" in finding.message


def test_destination_without_port_on_a_multi_port_service_is_ist0112(prod_plan):
    def no_port(objects):
        del _first_destination(objects)["port"]

    finding = only(findings_after(prod_plan, no_port), "IST0112")
    assert (finding.severity, finding.path) == ("error", "models.sentiment")


def test_mirror_destinations_are_checked_like_routes(prod_plan):
    def mirror_to_nowhere(objects):
        _vs(objects)["spec"]["http"][0]["mirror"] = {"host": "shadow"}

    finding = only(findings_after(prod_plan, mirror_to_nowhere), "IST0101")
    assert "shadow.ml-serving.svc.cluster.local" in finding.message  # short name resolved


# --- IST0173 / IST0174: DestinationRule subsets and hosts --------------------------------------


def test_subset_whose_labels_select_no_pods_is_ist0173(prod_plan):
    def mislabel(objects):
        _dr(objects)["spec"]["subsets"][1]["labels"] = {"version": "v44"}

    finding = only(findings_after(prod_plan, mislabel), "IST0173")
    assert (finding.severity, finding.path) == ("error", "models.sentiment.versions.v4")
    assert "selects no pods" in finding.message


def test_unrouted_version_scaled_to_zero_is_only_a_warning_through_config(dev):
    raw = with_value(dev, "models.sentiment.canary.weight", 0)
    raw = with_value(raw, "models.sentiment.versions.v2.replicas", 0)
    config = parse_config(raw, "dev")
    (finding,) = check(config, build_plan(config).objects())
    assert (finding.code, finding.severity) == ("IST0173", "warning")
    assert finding.path == "models.sentiment.versions.v2.replicas"


def test_destination_rule_for_an_unknown_host_is_ist0174(prod_plan):
    def unknown_host(objects):
        _dr(objects)["spec"]["host"] = "nothing.ml-serving.svc.cluster.local"

    findings = findings_after(prod_plan, unknown_host)
    assert only([f for f in findings if f.code == "IST0174"], "IST0174").severity == "warning"
    lost = [f for f in findings if f.code == "IST0101"]  # the routes lost their subsets too
    assert {f.path for f in lost} == {"models.sentiment.stable", "models.sentiment.canary.version"}


# --- IST0101 / IST0132: gateways ---------------------------------------------------------------


def test_virtual_service_bound_to_a_gateway_that_does_not_exist(prod_plan):
    def other_gateway(objects):
        _vs(objects)["spec"]["gateways"] = ["ml-serving/ml-gateway-v2", "mesh"]

    findings = findings_after(prod_plan, other_gateway)
    finding = only([f for f in findings if f.code == "IST0101"], "IST0101")
    assert finding.path == "gateway.name" and "'ml-serving/ml-gateway-v2'" in finding.message
    # a missing Gateway offers no host: istioctl reports IST0132 too (virtualservice/gateways.go)
    assert {f.code for f in findings} == {"IST0101", "IST0132"}


def test_virtual_service_hosts_the_gateway_does_not_serve_is_ist0132(prod_plan):
    def other_hosts(objects):
        for server in _gateway(objects)["spec"]["servers"]:
            server["hosts"] = [h for h in server["hosts"] if "sentiment" not in h]

    finding = only(findings_after(prod_plan, other_hosts), "IST0132")
    assert (finding.severity, finding.path) == ("warning", "gateway.domain")
    assert "sentiment.models.example.com" in finding.message


def test_gateway_host_offered_to_another_namespace_does_not_match(prod_plan):
    def other_namespace(objects):
        for server in _gateway(objects)["spec"]["servers"]:
            server["hosts"] = [h.replace("./", "team-b/") for h in server["hosts"]]

    findings = findings_after(prod_plan, other_namespace)
    assert {f.code for f in findings} == {"IST0132"}
    assert len(findings) == 2  # both models


@pytest.mark.parametrize("hosts", [["*/*.models.example.com"], ["./*"], ["*/*"]])
def test_wildcard_gateway_hosts_serve_the_model_hosts(prod_plan, hosts):
    def wildcard(objects):
        for server in _gateway(objects)["spec"]["servers"]:
            server["hosts"] = hosts

    assert findings_after(prod_plan, wildcard) == []


# --- IST0109: one mesh-bound VirtualService per host -------------------------------------------


def test_two_mesh_bound_virtual_services_for_one_host_is_ist0109(prod_plan):
    def duplicate(objects):
        twin = copy.deepcopy(_vs(objects))
        twin["metadata"]["name"] = "sentiment-shadow"
        objects.append(twin)

    findings = [f for f in findings_after(prod_plan, duplicate) if f.code == "IST0109"]
    assert len(findings) == 2  # each of the two VirtualServices, once (as istioctl)
    assert {f.resource for f in findings} == {
        "VirtualService ml-serving/sentiment",
        "VirtualService ml-serving/sentiment-shadow",
    }
    assert all(f.severity == "error" and f.path == "models.sentiment.hosts" for f in findings)


def test_virtual_services_exported_to_disjoint_namespaces_do_not_conflict(prod_plan):
    def split_scopes(objects):
        twin = copy.deepcopy(_vs(objects))
        twin["metadata"]["name"] = "sentiment-shadow"
        twin["spec"]["exportTo"] = ["team-a"]
        _vs(objects)["spec"]["exportTo"] = ["."]
        objects.append(twin)

    assert [f for f in findings_after(prod_plan, split_scopes) if f.code == "IST0109"] == []


# --- IST0118, IST0102, IST0123: Services and namespaces ----------------------------------------


@pytest.mark.parametrize(
    ("port", "flagged"),
    [
        ({"name": "metrics", "port": 9090}, True),
        ({"name": "metrics", "port": 9090, "appProtocol": "http"}, False),
        ({"name": "http-metrics", "port": 9090}, False),
        ({"name": "grpc-web", "port": 9090}, False),
        ({"name": "web", "port": 9090, "appProtocol": "kubernetes.io/h2c"}, False),
        ({"name": "http", "port": 9090, "appProtocol": "ftp"}, True),
    ],
)
def test_service_port_without_a_protocol_istio_knows_is_ist0118(prod_plan, port, flagged):
    def add_port(objects):
        _find(objects, "Service", "fraud")["spec"]["ports"].append(port)

    findings = [f for f in findings_after(prod_plan, add_port) if f.code == "IST0118"]
    assert bool(findings) is flagged
    if flagged:
        assert (findings[0].severity, findings[0].path) == ("info", "models.fraud.server")


def test_namespace_without_injection_label_is_ist0102(prod_plan):
    def no_label(objects):
        _find(objects, "Namespace", "ml-serving")["metadata"]["labels"].pop("istio-injection")

    finding = only(findings_after(prod_plan, no_label), "IST0102")
    assert (finding.severity, finding.path) == ("info", "namespace")


def test_namespace_with_both_injection_labels_is_ist0123(prod_plan):
    def both(objects):
        _find(objects, "Namespace", "ml-serving")["metadata"]["labels"]["istio.io/rev"] = "1-22"

    finding = only(findings_after(prod_plan, both), "IST0123")
    assert (finding.severity, finding.path) == ("warning", "istio.revision")


def test_a_revision_label_alone_counts_as_injection(dev):
    config = parse_config(with_value(dev, "istio.revision", "1-22-3"), "dev")
    assert check(config, build_plan(config).objects()) == []


# --- webhook rules: durations, weights, retries, percentages (IST0106 / IST0133) --------------


def _without_pack_fault(findings: list[Finding], fields: dict[str, Any]) -> list[Finding]:
    """prod is protected, so a route that injects a fault is also the policy pack's
    no-fault-injection error; the Istio rule under test is what remains."""
    pack = [f for f in findings if f.code == "POLICY/no-fault-injection"]
    assert bool(pack) == bool(fields.get("fault")), findings
    return [f for f in findings if f not in pack]


def _set_route(**fields):
    def edit(objects):
        _vs(objects)["spec"]["http"][0].update(fields)

    return edit


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"timeout": "0s"}, "'0s' must be at least 1ms"),
        ({"timeout": "1.5ms"}, "whole number of milliseconds"),
        ({"timeout": "1d"}, "is not a duration"),
        ({"retries": {"attempts": 2, "perTryTimeout": "500us"}}, "at least 1ms"),
        (
            {"corsPolicy": {"allowOrigins": [{"exact": "https://a.b"}], "maxAge": "1500ms"}},
            "whole number of seconds",
        ),
        ({"fault": {"delay": {"fixedDelay": "-1s", "percentage": {"value": 5}}}}, "at least 1ms"),
    ],
)
def test_bad_durations_are_rejected_like_istiod_does(prod_plan, fields, phrase):
    found = _without_pack_fault(findings_after(prod_plan, _set_route(**fields)), fields)
    finding = only(found, "IST0106")
    assert (finding.severity, finding.path) == ("error", "models.sentiment")
    assert phrase in finding.message


def test_destination_rule_durations_allow_a_zero_tcp_idle_timeout_only(prod_plan):
    def pool(objects):
        _dr(objects)["spec"]["trafficPolicy"] = {
            "connectionPool": {"tcp": {"idleTimeout": "0s", "connectTimeout": "0s"}}
        }

    finding = only(findings_after(prod_plan, pool), "IST0106")
    assert "spec.trafficPolicy.connectionPool.tcp.connectTimeout" in finding.message


@pytest.mark.parametrize(
    ("weights", "phrase"),
    [((95, -5), "weight -5 is not >= 0"), ((0, 0), "total destination weight is 0")],
)
def test_route_weights_follow_istio_rules(prod_plan, weights, phrase):
    def reweigh(objects):
        for target, weight in zip(_vs(objects)["spec"]["http"][0]["route"], weights, strict=True):
            target["weight"] = weight

    finding = only(findings_after(prod_plan, reweigh), "IST0106")
    assert finding.path == "models.sentiment.canary.weight" and phrase in finding.message


def test_weights_need_not_sum_to_100(prod_plan):
    def relative(objects):
        for target, weight in zip(_vs(objects)["spec"]["http"][0]["route"], (550, 50), strict=True):
            target["weight"] = weight

    assert findings_after(prod_plan, relative) == []


@pytest.mark.parametrize(
    ("retry", "phrase"),
    [
        ({"attempts": 0, "perTryTimeout": "2s"}, "perTryTimeout cannot be set"),
        ({"attempts": -1}, "must be >= 0"),
        ({"attempts": 3, "retryOn": "5xx, reset"}, "' reset' is not a retry policy"),
        ({"attempts": 3, "retryOn": "gateway-error,flaky"}, "'flaky'"),
    ],
)
def test_retry_rules(prod_plan, retry, phrase):
    finding = only(findings_after(prod_plan, _set_route(retries=retry)), "IST0106")
    assert phrase in finding.message


def test_retry_on_status_codes_and_known_policies_pass(prod_plan):
    retry = {"attempts": 3, "retryOn": "5xx,503,connect-failure", "perTryTimeout": "2s"}
    assert findings_after(prod_plan, _set_route(retries=retry)) == []


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        (
            {
                "mirror": {
                    "host": "sentiment.ml-serving.svc.cluster.local",
                    "port": {"number": 8501},
                },
                "mirrorPercentage": {"value": 150},
            },
            "mirrorPercentage 150.0 is not in 0..100",
        ),
        ({"fault": {}}, "needs an abort or a delay"),
        (
            {"fault": {"abort": {"httpStatus": 503, "percentage": {"value": 0.00001}}}},
            "is not 0 or in 0.0001..100",
        ),
    ],
)
def test_percentage_and_fault_rules(prod_plan, fields, phrase):
    found = _without_pack_fault(findings_after(prod_plan, _set_route(**fields)), fields)
    finding = only(found, "IST0106")
    assert phrase in finding.message


# --- webhook rules: labels, exportTo, ports --------------------------------------------------


def test_subset_labels_and_names_are_validated(prod_plan):
    def bad_subsets(objects):
        subsets = _dr(objects)["spec"]["subsets"]
        subsets[0]["labels"]["bad key!"] = "x"
        subsets.append(copy.deepcopy(subsets[1]))

    findings = [f for f in findings_after(prod_plan, bad_subsets) if f.code == "IST0106"]
    messages = " ".join(f.message for f in findings)
    assert "'bad key!' is not a qualified name" in messages
    assert "'v4' must be a unique DNS-1123 label" in messages


@pytest.mark.parametrize(
    ("kind", "name", "export", "phrase"),
    [
        ("VirtualService", "sentiment", ["*", "."], "must be the only entry"),
        ("VirtualService", "sentiment", [".", "ml-serving"], "lists a namespace twice"),
        ("VirtualService", "sentiment", ["~"], "is not '.', '*' or a namespace name"),
        ("ServiceEntry", "model-store", ["~", "."], "must be the only entry"),
    ],
)
def test_export_to_rules(prod_plan, kind, name, export, phrase):
    def set_export(objects):
        _find(objects, kind, name)["spec"]["exportTo"] = export

    finding = only(findings_after(prod_plan, set_export), "IST0106")
    assert phrase in finding.message


def test_service_entry_may_export_to_nobody(prod_plan):
    def hide(objects):
        _find(objects, "ServiceEntry", "model-store")["spec"]["exportTo"] = ["~"]

    assert findings_after(prod_plan, hide) == []


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda o: _first_destination(o)["port"].update(number=70000), "70000 is not in 1..65535"),
        (lambda o: _vs(o)["spec"]["http"][0].update(match=[{"port": 0}]), "port 0 is not in"),
        (
            lambda o: _find(o, "ServiceEntry", "aws-sts")["spec"]["ports"].append(
                {"number": 80, "name": "tls", "protocol": "HTTP"}
            ),
            "name 'tls' must be a unique DNS-1123 label",
        ),
        (
            lambda o: _find(o, "ServiceEntry", "aws-sts")["spec"]["ports"][0].update(
                protocol="FTP"
            ),
            "protocol 'FTP' is not one Istio knows",
        ),
    ],
    ids=["destination port", "match port", "entry port name", "entry protocol"],
)
def test_port_rules(prod_plan, edit, phrase):
    findings = [f for f in findings_after(prod_plan, edit) if f.code == "IST0106"]
    assert any(phrase in f.message for f in findings), findings


# --- Gateway servers and TLS (RULES.md 36-40) -------------------------------------------------


def _servers(objects: Objects) -> list[dict[str, Any]]:
    return _gateway(objects)["spec"]["servers"]


@pytest.mark.parametrize(
    ("edit", "path", "phrase"),
    [
        (lambda o: _servers(o)[1].pop("tls"), "gateway.tls", "a HTTPS server needs tls"),
        (
            lambda o: _servers(o)[1]["tls"].pop("mode"),
            "gateway.tls",
            "mode PASSTHROUGH (the default) ignores the certificates",
        ),
        (
            lambda o: _servers(o)[1]["tls"].pop("credentialName"),
            "gateway.tls.credentialName",
            "mode SIMPLE needs credentialName",
        ),
        (
            lambda o: _servers(o)[1]["tls"].update(credentialNames=["a", "b"]),
            "gateway.tls",
            "set only one certificate source",
        ),
        (
            lambda o: _servers(o)[0].update(tls={"mode": "SIMPLE", "credentialName": "x"}),
            "gateway.tls",
            "a HTTP server may only set httpsRedirect",
        ),
        (
            lambda o: _servers(o)[1]["tls"].update(mode="ISTIO_MUTUAL"),
            "gateway.tls",
            "ISTIO_MUTUAL takes no certificates",
        ),
        (
            lambda o: _servers(o)[1]["tls"].update(mode="MUTUAL_PLEASE"),
            "gateway.tls",
            "is not a TLS mode",
        ),
        (lambda o: _servers(o)[1].update(hosts=[]), "models", "at least one host"),
        (
            lambda o: _servers(o)[1].update(hosts=["./sentiment"]),
            "gateway.domain",
            "'./sentiment' is not <namespace>/<fqdn with a dot>",
        ),
        (lambda o: _gateway(o)["metadata"].update(name="ml.gateway"), "gateway.name", "label"),
        (lambda o: _servers(o)[0]["port"].update(protocol="QUIC"), None, "'QUIC' unknown"),
        (lambda o: _servers(o)[0]["port"].update(number=0), None, "not in 1..65535"),
        (lambda o: _servers(o)[0]["port"].update(targetPort=8080), None, "must not be set"),
    ],
    ids=[
        "https without tls",
        "tls without mode",
        "simple without credential",
        "two certificate sources",
        "tls on plain http",
        "istio mutual with credential",
        "unknown mode",
        "server without hosts",
        "short host",
        "dotted name",
        "unknown protocol",
        "port zero",
        "target port",
    ],
)
def test_gateway_server_and_tls_rules(prod_plan, edit, path, phrase):
    findings = [f for f in findings_after(prod_plan, edit) if f.code in ("IST0106", "IST0133")]
    assert any(f.path == path and phrase in f.message for f in findings), findings


def test_findings_come_errors_first_then_warnings_then_info(prod_plan):
    def three_levels(objects):
        _find(objects, "Namespace", "ml-serving")["metadata"]["labels"].pop("istio-injection")
        _servers(objects)[1]["tls"].pop("mode")  # warning, no config path issue
        _servers(objects)[0]["port"]["protocol"] = "QUIC"  # error without a config path

    severities = [f.severity for f in findings_after(prod_plan, three_levels)]
    assert set(severities) == {"error", "warning", "info"}
    assert severities == sorted(severities, key=["error", "warning", "info"].index)


def test_duplicate_gateway_port_names_are_rejected(prod_plan):
    def rename(objects):
        _servers(objects)[1]["port"]["name"] = "http"

    finding = only(findings_after(prod_plan, rename), "IST0106")
    assert "port.name 'http' must be unique" in finding.message


# --- durations read as Go reads them ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanos"),
    [
        ("1ms", 10**6),
        ("1m30s", 90 * 10**9),
        ("1.5h", 5400 * 10**9),
        (".5s", 5 * 10**8),
        ("0", 0),
        ("-2s", -2 * 10**9),
        ("1µs", 10**3),
        ("3ns", 3),
    ],
)
def test_parse_duration_reads_go_syntax(text, nanos):
    assert parse_duration(text) == nanos


@pytest.mark.parametrize("text", ["", "5", "1d", "5 s", "s", ".s", "1h-1m", "+"])
def test_parse_duration_refuses_what_go_refuses(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


# --- MESH0003: images pinned by digest -----------------------------------------------------------

# A digest of the right shape for these tests only: no stack file carries it.
TEST_DIGEST = "sha256:" + "0123456789abcdef" * 4


def _image_findings(raw: dict[str, Any], stack: str = "prod") -> list[Finding]:
    config = parse_config(raw, stack)
    return [f for f in check(config, build_plan(config).objects()) if f.code == "MESH0003"]


def _pinned(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with every image, the model fetcher's too, pinned by digest."""
    raw = with_value(raw, "images.modelFetcher", f"amazon/aws-cli:2.17.37@{TEST_DIGEST}")
    for name, model in raw["models"].items():
        for version, spec in model["versions"].items():
            raw = with_value(
                raw, f"models.{name}.versions.{version}.image", f"{spec['image']}@{TEST_DIGEST}"
            )
    return raw


def test_a_protected_stack_warns_on_each_tag_only_image_naming_its_key(prod):
    findings = _image_findings(prod)
    assert {f.severity for f in findings} == {"warning"}
    by_resource = {(f.resource, f.path) for f in findings}
    assert by_resource == {
        ("Deployment ml-serving/sentiment-v3", "models.sentiment.versions.v3.image"),
        ("Deployment ml-serving/sentiment-v4", "models.sentiment.versions.v4.image"),
        ("Deployment ml-serving/fraud-v7", "models.fraud.versions.v7.image"),
        # the init container that copies the model from S3: its default image counts too
        ("Deployment ml-serving/sentiment-v3", "images.modelFetcher"),
        ("Deployment ml-serving/sentiment-v4", "images.modelFetcher"),
    }
    (fraud,) = [f for f in findings if f.path == "models.fraud.versions.v7.image"]
    assert "'nvcr.io/nvidia/tritonserver:24.08-py3' is pinned by tag only" in fraud.message
    assert "nvcr.io/nvidia/tritonserver:24.08-py3@sha256:<digest>" in fraud.message
    assert "crane digest" in fraud.message and "images.requireDigests" in fraud.message


def test_images_pinned_by_digest_give_no_finding(prod):
    assert _image_findings(_pinned(prod)) == []
    # a digest without a tag is pinned as well (what the policy pack's image_has_digest says)
    raw = with_value(_pinned(prod), "models.fraud.versions.v7.image", f"nvcr.io/t@{TEST_DIGEST}")
    assert _image_findings(raw) == []


def test_require_digests_makes_a_tag_only_image_an_error_that_stops_the_program(prod):
    raw = with_value(
        _pinned(prod), "models.sentiment.versions.v4.image", "tensorflow/serving:2.16.1"
    )
    raw = with_value(raw, "images.requireDigests", True)
    (finding,) = _image_findings(raw)
    assert (finding.severity, finding.path) == ("error", "models.sentiment.versions.v4.image")
    assert "images.requireDigests is true" in finding.message
    run, error = try_program(raw, stack="prod")
    assert str(error).startswith(
        "ml-mesh: stack 'prod' fails mesh checks: error MESH0003 models.sentiment.versions.v4.image: "
    )
    assert run.resources == []
    assert try_program(_pinned(with_value(prod, "images.requireDigests", True)), "prod")[1] is None


def test_unprotected_stacks_follow_tags_unless_digests_are_required(dev):
    assert _image_findings(dev, "dev") == []
    required = _image_findings(with_value(dev, "images.requireDigests", "true"), "dev")
    assert {f.severity for f in required} == {"error"}
    assert "models.sentiment.versions.v2.image" in {f.path for f in required}


def test_the_flagger_target_names_the_image_of_the_version_it_runs(prod):
    raw = with_value(prod, "models.sentiment.canary", {"version": "v4"})
    raw = with_value(raw, "models.sentiment.progressive", {})
    paths = {(f.resource, f.path) for f in _image_findings(raw)}
    assert ("Deployment ml-serving/sentiment", "models.sentiment.versions.v4.image") in paths


# --- the program and the CLI act on findings ---------------------------------------------------


@pytest.fixture
def lost_canary_subset(monkeypatch):
    """A builder bug: the DestinationRule forgets the canary's subset."""

    def broken_traffic(config, name):
        rule = destination_rule(config, name)
        canary = config.models[name].canary
        rule["spec"]["subsets"] = [
            s for s in rule["spec"]["subsets"] if canary is None or s["name"] != canary.version
        ]
        return [rule, virtual_service(config, name)]

    monkeypatch.setattr("mesh.plan.traffic_objects", broken_traffic)


def test_program_refuses_to_register_anything_on_an_error_finding(dev, lost_canary_subset):
    run, error = try_program(dev)
    assert isinstance(error, pulumi.RunError)
    assert str(error).startswith("ml-mesh: stack 'dev' fails mesh checks: error IST0101 ")
    assert "models.sentiment.canary.version" in str(error)
    assert run.resources == []


def test_program_logs_warnings_and_still_deploys(dev, caplog):
    raw = with_value(dev, "models.sentiment.canary.weight", 0)
    raw = with_value(raw, "models.sentiment.versions.v2.replicas", 0)
    with caplog.at_level(logging.WARNING):
        run, error = try_program(raw)
    assert error is None and run.resources
    assert any(
        "warning IST0173 models.sentiment.versions.v2.replicas" in m for m in caplog.messages
    )


def test_check_command_prints_findings_and_fails_on_errors(capsys, lost_canary_subset):
    assert cli.main(["check", "dev"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        "Error [IST0101] (VirtualService ml-serving/sentiment models.sentiment.canary.version) "
    )
    objects = len(build_plan(load_stack("dev").config).objects())
    assert out[-1] == f"# stack dev: {objects} objects checked: 2 errors, 0 warnings, 0 info"


def test_check_command_passes_a_clean_stack(capsys):
    assert cli.main(["check", "dev"]) == 0
    objects = len(build_plan(load_stack("dev").config).objects())
    assert capsys.readouterr().out == (
        f"# stack dev: {objects} objects checked: 0 errors, 0 warnings, 0 info\n"
    )


def test_render_refuses_a_plan_the_program_would_refuse(capsys, lost_canary_subset):
    assert cli.main(["render", "dev"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("ml-mesh: stack 'dev' fails mesh checks: error IST0101")


def test_check_is_linear_enough_to_index_each_kind_once(monkeypatch):
    """No rule may compare every object with every other: count the label lookups."""
    raw = stack_raw("dev")
    models = {f"m{i}": raw["models"]["sentiment"] for i in range(60)}
    config = parse_config({**raw, "models": models}, "dev")
    objects = build_plan(config).objects()
    calls = []
    original = checks._Index.pods_matching
    monkeypatch.setattr(
        checks._Index,
        "pods_matching",
        lambda self, ns, wanted: calls.append(len(r := original(self, ns, wanted))) or r,
    )
    assert check(config, objects) == []
    assert len(calls) == 120 and max(calls) == 1  # one lookup per subset, one template each


def test_render_shows_warnings_beside_the_traffic_table(tmp_path, capsys):
    text = (PROJECT_DIR / "Pulumi.dev.yaml").read_text()
    text = text.replace("weight: 10", "weight: 0").replace(
        "modelPath: sentiment/2\n          replicas: 1",
        "modelPath: sentiment/2\n          replicas: 0",
    )
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(text)
    assert cli.main(["render", str(path)]) == 0
    err = capsys.readouterr().err
    assert "warning IST0173 models.sentiment.versions.v2.replicas" in err
    assert cli.main(["check", str(path)]) == 0  # warnings alone do not fail a check
