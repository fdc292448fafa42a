"""Istio's gateway analyzers over a cluster snapshot (`mesh check --with`): the Gateway's pods and
Service ports (IST0101, IST0162), its credential Secret (IST0101, IST0161), conflicting Gateways
(IST0145) and shared certificates (IST0138), on the stack's Gateway and on the cluster's.

Cases marked `testdata/...` are ported from istio/istio 1.30.3
`pkg/config/analysis/analyzers/testdata/` and the expectations of `analyzers_test.go`.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import yaml

from mesh.checks import check
from mesh.checks.gateway_workloads import (
    certificate_problem,
    root_problem,
    selector_string,
    workload_pods,
)
from mesh.checks.index import _Index
from mesh.checks.snapshot import load_snapshot, merge
from mesh.cli import main
from mesh.config import StackConfig, parse_config
from mesh.plan import build_plan
from tests.conftest import stack_raw, with_value

GATEWAY_CODES = {"IST0101", "IST0138", "IST0145", "IST0161", "IST0162", "MESH0007", "MESH0008"}
STACK_GATEWAY = "Gateway ml-serving/ml-gateway"
CREDENTIAL = "models-example-com-tls"  # Pulumi.prod.yaml gateway.tls.credentialName
INGRESS = {"istio": "ingressgateway"}


def _pod(namespace: str, labels: dict[str, str], name: str = "gw-1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }


def _service(
    namespace: str, selector: dict[str, str] | None, ports: list[dict[str, Any]], name: str = "gw"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _secret(
    namespace: str, name: str, keys: list[str], kind: str = "kubernetes.io/tls"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": kind,
        "data": dict.fromkeys(keys, ""),
    }


def _gateway(
    namespace: str,
    name: str,
    servers: list[dict[str, Any]],
    selector: dict[str, str] | None = None,
    api_version: str = "networking.istio.io/v1",
) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": INGRESS if selector is None else selector, "servers": servers},
    }


def _server(port: int, hosts: list[str], tls: dict[str, Any] | None = None, **extra: Any):
    server: dict[str, Any] = {
        "port": {"number": port, "name": f"p{port}", "protocol": "HTTPS" if tls else "HTTP"},
        "hosts": hosts,
        **extra,
    }
    if tls is not None:
        server["tls"] = tls
    return server


# The ingress gateway as Istio installs it, in its own namespace (not the stack's): pods, a
# Service whose ports 80/443 target the proxy's 8080/8443, the TLS Secret next to the pods.
def _listed(namespace: str) -> dict[str, Any]:
    """The marker examples/cluster/snapshot.sh writes for a namespace whose Secrets it lists."""
    return {
        "apiVersion": "snapshot.ml-mesh.dev/v1",
        "kind": "SecretsListed",
        "metadata": {"name": namespace},
    }


def _ingress(namespace: str = "istio-ingress") -> list[dict[str, Any]]:
    """The gateway pods and Service in `namespace`, whose Secrets the snapshot lists."""
    return [
        _listed(namespace),
        _pod(namespace, {**INGRESS, "app": "istio-ingressgateway"}),
        _service(
            namespace,
            INGRESS,
            [
                {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443},
            ],
        ),
    ]


def _healthy(namespace: str = "istio-ingress") -> list[dict[str, Any]]:
    return [*_ingress(namespace), _secret(namespace, CREDENTIAL, ["tls.crt", "tls.key"])]


def _prod(raw: dict[str, Any] | None = None) -> tuple[StackConfig, list[dict[str, Any]]]:
    config = parse_config(raw or stack_raw("prod"), "prod")
    return config, build_plan(config).objects()


def _gateway_findings(cluster: list[dict[str, Any]] | None, raw: dict[str, Any] | None = None):
    config, objects = _prod(raw)
    return [
        f
        for f in check(config, objects, cluster=cluster)
        if f.code in GATEWAY_CODES and f.resource.startswith("Gateway ")
    ]


def _codes(findings) -> list[tuple[str, str, str]]:
    return sorted((f.code, f.resource, f.origin) for f in findings)


# --- no snapshot: nothing to say about pods, Services or Secrets


def test_stack_alone_reports_nothing_about_gateway_workloads():
    assert _gateway_findings(None) == []


def test_a_healthy_cluster_reports_nothing_on_the_stack_gateway():
    assert _gateway_findings(_healthy()) == []


# --- IngressGatewayPortAnalyzer (gateway.go): pods and Service ports


def test_no_gateway_pods_is_a_stack_error_naming_the_selector():
    (finding,) = _gateway_findings([_secret("istio-ingress", CREDENTIAL, ["tls.crt", "tls.key"])])
    assert (finding.severity, finding.code, finding.path) == (
        "error",
        "IST0101",
        "gateway.selector",
    )
    assert finding.resource == STACK_GATEWAY and finding.fails
    assert finding.message.startswith('Referenced selector not found: "istio=ingressgateway": ')


def test_gateway_pods_with_other_labels_do_not_count():
    pods = [_pod("istio-ingress", {"istio": "egressgateway"})]
    assert _codes(_gateway_findings(pods)) == [("IST0101", STACK_GATEWAY, "stack")]


def test_pods_without_a_service_leave_every_server_port_unexposed():
    secret = _secret("istio-ingress", CREDENTIAL, ["tls.crt", "tls.key"])
    findings = _gateway_findings([_pod("istio-ingress", INGRESS), secret])
    assert [(f.code, f.severity, f.path) for f in findings] == [
        ("IST0162", "warning", "gateway.selector")
    ] * 2
    messages = sorted(f.message for f in findings)
    assert "(port 443)" in messages[0] and "(port 80)" in messages[1]
    assert "Pod selector istio=ingressgateway" in messages[0]


def _ports_findings(service_ports: list[dict[str, Any]], service_ns: str = "istio-ingress"):
    cluster = [
        _pod("istio-ingress", INGRESS),
        _service(service_ns, INGRESS, service_ports),
        _secret("istio-ingress", CREDENTIAL, ["tls.crt", "tls.key"]),
    ]
    return sorted(
        int(f.message.split("(port ")[1].split(")")[0])
        for f in _gateway_findings(cluster)
        if f.code == "IST0162"
    )


@pytest.mark.parametrize(
    ("ports", "unexposed"),
    [
        # testdata/gateway-custom-ingressgateway-translation.yaml: server 80 = Service port 80
        ([{"port": 80, "protocol": "TCP", "targetPort": 8003}], [443]),
        # the server port is the Service's targetPort
        ([{"port": 8000, "protocol": "TCP", "targetPort": 80}], [443]),
        # a named targetPort: the port itself is what counts
        ([{"port": 80, "protocol": "TCP", "targetPort": "http"}], [443]),
        # testdata/gateway-custom-ingressgateway-badport-notarget.yaml: no targetPort
        ([{"port": 443, "protocol": "TCP"}], [80]),
        # a numeric string targetPort is read as its number (intstr.IntValue)
        ([{"port": 9000, "protocol": "TCP", "targetPort": "443"}], [80]),
        # no protocol: the API server defaults it to TCP
        ([{"port": 80}, {"port": 443}], []),
        # only TCP ports count
        ([{"port": 80, "protocol": "UDP"}, {"port": 443, "protocol": "TCP"}], [80]),
        # testdata/gateway-custom-ingressgateway-badport.yaml: 80->8003 exposes neither
        ([{"port": 8001, "protocol": "TCP", "targetPort": 8003}], [80, 443]),
    ],
)
def test_server_ports_are_exposed_as_the_analyzer_computes_them(ports, unexposed):
    assert _ports_findings(ports) == unexposed


def test_a_service_in_another_namespace_than_the_pods_exposes_nothing():
    ports = [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]
    assert _ports_findings(ports, service_ns="ml-serving") == [80, 443]


def test_a_service_selecting_other_pods_exposes_nothing():
    # testdata/gateway-custom-ingressgateway-svcselector.yaml
    cluster = [
        _pod("istio-ingress", INGRESS),
        _pod("istio-ingress", {"istio": "other"}, name="other"),
        _service("istio-ingress", {"istio": "other"}, [{"port": 80}, {"port": 443}]),
        _secret("istio-ingress", CREDENTIAL, ["tls.crt", "tls.key"]),
    ]
    assert [f.code for f in _gateway_findings(cluster)] == ["IST0162", "IST0162"]


def test_gateway_pods_in_any_namespace_serve_the_gateway():
    # PILOT_SCOPE_GATEWAY_TO_NAMESPACE is off by default: pods anywhere count.
    assert _gateway_findings(_healthy("istio-system")) == []
    assert _gateway_findings(_healthy("ml-serving")) == []


def test_a_cluster_gateway_without_pods_is_reported_as_the_clusters():
    foreign = _gateway("team-b", "web", [_server(8080, ["web.example.com"])], {"app": "nope"})
    findings = _gateway_findings([*_healthy(), foreign])
    assert _codes(findings) == [("IST0101", "Gateway team-b/web", "cluster")]
    assert findings[0].path is None and not findings[0].fails
    assert "fix spec.selector" in findings[0].message


def test_a_gateway_api_gateway_of_the_same_name_is_not_an_istio_gateway():
    # Same namespace and name as the stack's Gateway, another API group: neither replaced by
    # the stack's nor analysed as an Istio Gateway (it has no selector, no pods, no Secret).
    k8s_gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "ml-gateway", "namespace": "ml-serving"},
        "spec": {"gatewayClassName": "istio", "listeners": [{"name": "h", "port": 80}]},
    }
    assert _gateway_findings([*_healthy(), k8s_gateway]) == []


def test_the_stacks_own_deployments_stand_for_their_pods():
    # merge drops the live Pods of a Deployment the stack replaces; its template stands for them.
    raw = with_value(stack_raw("prod"), "gateway.selector", {"app": "fraud"})
    config, objects = _prod(raw)
    live = _pod("ml-serving", {"app": "sentiment"}, name="sentiment-v3-abc")
    world = merge(objects, [live], config.namespace)
    pods = workload_pods(_Index(config, world.objects, None, world.stack_ids))
    assert {p.namespace for p in pods if p.labels.get("app") == "fraud"} == {"ml-serving"}
    selector_not_found = [
        f for f in _gateway_findings([], raw) if f.code == "IST0101" and "selector" in f.message
    ]
    assert selector_not_found == []


def test_selector_string_is_sorted_like_klabels():
    assert (
        selector_string({"istio": "ingressgateway", "app": "gw"}) == "app=gw,istio=ingressgateway"
    )
    assert selector_string({}) == ""


# --- SecretAnalyzer (secret.go): the credential Secret in the workload's namespace


def _credential_findings(cluster: list[dict[str, Any]], raw: dict[str, Any] | None = None):
    return [
        f for f in _gateway_findings(cluster, raw) if f.code in ("IST0101", "IST0161", "MESH0008")
    ]


def test_a_missing_credential_secret_is_a_stack_error():
    (finding,) = _credential_findings(_ingress())
    assert (finding.code, finding.severity, finding.path, finding.origin) == (
        "IST0101",
        "error",
        "gateway.tls.credentialName",
        "stack",
    )
    assert finding.message.startswith(f'Referenced credentialName not found: "{CREDENTIAL}": ')
    assert "kubectl -n istio-ingress create secret tls" in finding.message


def test_a_credential_in_a_namespace_whose_secrets_were_not_listed_is_not_judged():
    """No Secret of istio-ingress and no marker: the snapshot did not look there, so a missing
    Secret proves nothing. The stack is told its credential went unchecked (MESH0007 info); a
    foreign Gateway on the same pods gets nothing."""
    cluster = [o for o in _ingress() if o["kind"] != "SecretsListed"]
    tls = {"mode": "SIMPLE", "credentialName": "web-cert"}
    foreign = _gateway("team-b", "web", [_server(443, ["web.example.com"], tls)])
    findings = _gateway_findings([*cluster, foreign])
    credential = [f for f in findings if "credential" in f.message.lower()]
    assert [(f.code, f.severity, f.path, f.origin) for f in credential] == [
        ("MESH0007", "info", "gateway.tls.credentialName", "stack")
    ]
    assert "examples/cluster/snapshot.sh istio-ingress" in credential[0].message
    # One Secret of the namespace in the snapshot shows its Secrets were listed.
    findings = _gateway_findings([*cluster, _secret("istio-ingress", "other", ["tls.crt"])])
    assert [f.code for f in findings if "credential" in f.message.lower()] == ["IST0101"]


def test_the_secret_in_the_gateways_own_namespace_is_not_where_istio_looks():
    # testdata/gateway-secrets.yaml `customgateway-wrongnamespace`: the workload's namespace
    # counts, not the Gateway's (ml-serving).
    cluster = [*_ingress(), _secret("ml-serving", CREDENTIAL, ["tls.crt", "tls.key"])]
    (finding,) = _credential_findings(cluster)
    assert finding.code == "IST0101"
    assert "exists in ml-serving, which the gateway never reads" in finding.message


@pytest.mark.parametrize(
    ("keys", "kind", "problem"),
    [
        (["tls.crt", "tls.key"], "kubernetes.io/tls", None),
        (["cert", "key"], "Opaque", None),
        # ExtractCertInfo ignores the type: tls.crt/tls.key in an Opaque Secret will do
        (["tls.crt", "tls.key", "ca.crt"], "Opaque", None),
        # testdata/gateway-secrets-validation.yaml `missing-key`: tls.cert is not tls.crt
        (["tls.cert"], "kubernetes.io/tls", "found: tls.cert"),
        (["cert"], "Opaque", "found: cert"),
        ([], "Opaque", "found: no keys"),
        (["a", "b", "c", "d", "e"], "Opaque", "found: a, b, c, and 2 more..."),
    ],
)
def test_the_credential_needs_a_certificate_and_key_by_key_name(keys, kind, problem):
    cluster = [*_ingress(), _secret("istio-ingress", CREDENTIAL, keys, kind)]
    findings = _credential_findings(cluster)
    if problem is None:
        assert findings == []
        return
    (finding,) = findings
    assert (finding.code, finding.severity, finding.path) == (
        "IST0161",
        "error",
        "gateway.tls.credentialName",
    )
    assert finding.message.startswith(
        "The credential referenced by the Gateway ml-gateway in namespace istio-ingress is "
        "invalid, which can cause the traffic not to work as expected. "
    )
    assert problem in finding.message


@pytest.mark.parametrize(
    ("secrets", "ca_problem"),
    [
        ([("x", ["tls.crt", "tls.key", "ca.crt"])], None),
        ([("x", ["cert", "key", "cacert"])], None),
        ([("x", ["tls.crt", "tls.key"]), ("x-cacert", ["cacert"])], None),
        ([("x", ["tls.crt", "tls.key"])], "Secret istio-ingress/x:"),
        # a -cacert Secret without a CA is read, the credential is not tried
        ([("x", ["tls.crt", "tls.key", "ca.crt"]), ("x-cacert", ["tls.crt"])], "x-cacert"),
    ],
)
def test_a_mutual_server_needs_the_client_ca(secrets, ca_problem):
    raw = with_value(stack_raw("prod"), "gateway.tls", {"credentialName": "x", "mode": "MUTUAL"})
    cluster = [*_ingress(), *(_secret("istio-ingress", n, keys, "Opaque") for n, keys in secrets)]
    findings = _credential_findings(cluster, raw)
    if ca_problem is None:
        assert findings == []
        return
    (finding,) = findings
    # istioctl has no analyzer for the client CA: ml-mesh's own code, not IST0161
    assert finding.code == "MESH0008" and "mode MUTUAL needs the client CA" in finding.message
    assert f"read from Secret istio-ingress/{'x-cacert' if 'cacert' in ca_problem else 'x'}:" in (
        finding.message
    )


def test_a_simple_server_needs_no_ca():
    cluster = [*_ingress(), _secret("istio-ingress", CREDENTIAL, ["tls.crt", "tls.key"])]
    assert _credential_findings(cluster) == []
    assert root_problem({"tls.crt", "tls.key"}) is not None
    assert certificate_problem({"tls.crt", "tls.key"}) is None


def test_gateway_pods_in_two_namespaces_need_the_secret_in_both():
    cluster = [*_healthy("istio-ingress"), *_ingress("istio-system")]
    (finding,) = _credential_findings(cluster)
    assert finding.code == "IST0101" and "namespace 'istio-system'" in finding.message


def test_a_credential_name_with_a_namespace_is_looked_up_there():
    # resource.NewShortOrFullName: `ns/name` names its namespace.
    team_b = [_pod("team-b", {"istio": "team-b"}), _service("team-b", None, [{"port": 9443}])]
    team_b.append(_listed("certs"))  # snapshot.sh istio-ingress certs
    gateway = _foreign_tls("SIMPLE", "certs/wild")
    there = _secret("certs", "wild", ["tls.crt", "tls.key"])
    beside_the_pods = _secret("team-b", "wild", ["tls.crt", "tls.key"])
    assert _gateway_findings([*_healthy(), *team_b, gateway, there]) == []
    findings = _gateway_findings([*_healthy(), *team_b, gateway, beside_the_pods])
    assert [(f.code, f.origin) for f in findings] == [("IST0101", "cluster")]


def _foreign_tls(mode: str, credential: str | None = None) -> dict[str, Any]:
    tls: dict[str, Any] = {"mode": mode}
    if credential:
        tls["credentialName"] = credential
    return _gateway(
        "team-b",
        "tls",
        [_server(9443, ["b.example.com"], tls)],
        {"istio": "team-b"},
    )


def test_servers_without_a_credential_name_need_no_secret():
    # PASSTHROUGH and ISTIO_MUTUAL servers take no credentialName (testdata/gateway-secrets.yaml
    # `defaultgateway-nocredential`)
    team_b = [_pod("team-b", {"istio": "team-b"}), _service("team-b", None, [{"port": 9443}])]
    for mode in ("PASSTHROUGH", "ISTIO_MUTUAL", "SIMPLE"):
        assert _gateway_findings([*_healthy(), *team_b, _foreign_tls(mode)]) == []


def test_a_foreign_gateways_missing_secret_is_the_clusters():
    team_b = [_pod("team-b", {"istio": "team-b"}), _service("team-b", None, [{"port": 9443}])]
    team_b.append(_listed("team-b"))
    findings = _gateway_findings([*_healthy(), *team_b, _foreign_tls("SIMPLE", "b-cert")])
    assert _codes(findings) == [("IST0101", "Gateway team-b/tls", "cluster")]
    assert findings[0].path is None


def test_the_live_version_of_the_stacks_gateway_is_replaced_not_doubled():
    # Same group, kind, namespace and name: the stack's Gateway replaces it, so its servers do
    # not conflict with themselves.
    _config, objects = _prod()
    (stack_gateway,) = [o for o in objects if o["kind"] == "Gateway"]
    live = {**stack_gateway, "apiVersion": "networking.istio.io/v1beta1"}
    assert _gateway_findings([*_healthy(), live]) == []


SECRET_VALUE = "c3VwZXItc2VjcmV0LWtleQ=="  # base64 of "super-secret-key"


def test_a_secrets_data_never_reaches_the_output(tmp_path, capsys):
    snapshot = tmp_path / "cluster.yaml"
    ingress = yaml.safe_dump_all(_ingress())
    annotation = {"kubectl.kubernetes.io/last-applied-configuration": f'{{"key":"{SECRET_VALUE}"}}'}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": CREDENTIAL, "namespace": "istio-ingress", "annotations": annotation},
        "type": "Opaque",
        "data": {"key": SECRET_VALUE, "crt": SECRET_VALUE},
        "stringData": {"password": "super-secret-key"},
    }
    snapshot.write_text(ingress + "---\n" + yaml.safe_dump(secret))
    loaded = load_snapshot([str(snapshot)])
    config, objects = _prod()
    findings = check(config, objects, cluster=loaded)
    (invalid,) = [f for f in findings if f.code == "IST0161"]
    assert "found: crt, key, password" in invalid.message  # key names, as Istio reports them
    rc = main(["check", "prod", "--with", str(snapshot)])
    out = capsys.readouterr()
    assert rc != 0 and "IST0161" in out.out
    for text in (out.out + out.err, *map(str, findings)):
        assert SECRET_VALUE not in text and "super-secret-key" not in text


def test_a_snapshot_on_stdin_is_analysed_alike(monkeypatch, capsys):
    snapshot = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": _healthy()})
    monkeypatch.setattr("sys.stdin", io.StringIO(snapshot))
    assert main(["check", "prod", "--with", "-"]) == 0
    assert "ml-gateway" not in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump_all(_ingress())))
    assert main(["check", "prod", "--with", "-"]) == 1
    assert f'Referenced credentialName not found: "{CREDENTIAL}"' in capsys.readouterr().out


# --- ConflictingGatewayAnalyzer (conflictinggateway.go)


def _conflicts(gateways: list[dict[str, Any]], pods: list[dict[str, Any]] | None = None):
    findings = _gateway_findings([*_healthy(), *(pods or []), *gateways])
    return sorted((f.resource, f.origin) for f in findings if f.code == "IST0145")


def test_conflicting_gateways_on_the_same_selector_port_and_host():
    # testdata/conflicting-gateways.yaml
    alpha = _gateway("default", "alpha", [_server(80, ["foo.bar"])])
    beta = _gateway("default", "beta", [_server(80, ["foo.bar"])])
    assert _conflicts([alpha, beta]) == [
        ("Gateway default/alpha", "cluster"),
        ("Gateway default/beta", "cluster"),
    ]
    findings = _gateway_findings([*_healthy(), alpha, beta])
    message = next(f.message for f in findings if f.resource == "Gateway default/alpha")
    assert message.startswith(
        "Conflict with gateways default/beta (workload selector istio=ingressgateway, port 80, "
        "hosts foo.bar)."
    )


@pytest.mark.parametrize(
    ("alpha", "beta"),
    [
        # testdata/gateway-different-port.yaml
        (_server(80, ["foo.bar"]), _server(8080, ["foo.bar"])),
        (_server(80, ["foo.bar"]), _server(80, ["bar.foo"])),
        # hosts are compared as written: ./foo.bar and foo.bar differ
        (_server(80, ["./foo.bar"]), _server(80, ["foo.bar"])),
        # another bind address is another listener
        (_server(80, ["foo.bar"], bind="10.0.0.1"), _server(80, ["foo.bar"])),
    ],
)
def test_gateways_apart_do_not_conflict(alpha, beta):
    gateways = [_gateway("default", "alpha", [alpha]), _gateway("default", "beta", [beta])]
    assert _conflicts(gateways) == []


def test_a_sub_selector_conflicts_when_a_pod_matches_both():
    # testdata/conflicting-gateways-subSelector.yaml
    wide = {"istio": "ingressgateway", "app": "istio-ingressgateway", "cusKey": "cusValue"}
    narrow = {"istio": "ingressgateway", "cusKey": "cusValue"}
    beta = _gateway("default", "beta", [_server(80, ["foo.bar"])], wide)
    alpha = _gateway("default", "alpha", [_server(80, ["foo.bar"])], narrow)
    both = [_pod("istio-ingress", wide, name="gw-2")]
    assert [r for r, _ in _conflicts([alpha, beta], both)] == [
        "Gateway default/alpha",
        "Gateway default/beta",
    ]
    assert _conflicts([alpha, beta], [_pod("istio-ingress", narrow, name="gw-2")]) == []


def test_a_foreign_gateway_taking_the_stacks_host_is_introduced():
    host = "./sentiment.models.example.com"
    foreign = _gateway("ml-serving", "team-b-gateway", [_server(80, [host])])
    assert _conflicts([foreign]) == [
        ("Gateway ml-serving/ml-gateway", "stack"),
        ("Gateway ml-serving/team-b-gateway", "introduced"),
    ]
    findings = _gateway_findings([*_healthy(), foreign])
    stack = next(f for f in findings if f.resource == STACK_GATEWAY)
    assert stack.path == "gateway.domain" and stack.fails
    # the shared istio: ingressgateway with `*` is merged by Istio, not a conflict
    assert _conflicts([_gateway("istio-system", "default", [_server(80, ["*"])])]) == []


# --- CertificateAnalyzer (certificate.go)


def _duplicates(gateways: list[dict[str, Any]]):
    findings = _gateway_findings([*_healthy(), *gateways])
    return sorted((f.resource, f.severity, f.origin) for f in findings if f.code == "IST0138")


def test_a_certificate_shared_with_a_gateway_on_the_same_workload_is_a_warning():
    tls = {"mode": "SIMPLE", "credentialName": CREDENTIAL}
    foreign = _gateway("istio-ingress", "other", [_server(8443, ["b.example.com"], tls)])
    assert _duplicates([foreign]) == [
        ("Gateway istio-ingress/other", "warning", "introduced"),
        ("Gateway ml-serving/ml-gateway", "warning", "stack"),
    ]
    findings = _gateway_findings([*_healthy(), foreign])
    message = next(f.message for f in findings if f.code == "IST0138")
    assert message.startswith("Duplicate certificate in multiple gateways [")


def test_the_selector_of_a_duplicate_must_include_this_gateways():
    # selectorSubset: the stack's {istio: ingressgateway} is in the foreign {istio, app}; not
    # the other way round (testdata/gateway-duplicate-certificate.yaml).
    tls = {"mode": "SIMPLE", "credentialName": CREDENTIAL}
    wider = {**INGRESS, "app": "istio-ingressgateway"}
    foreign = _gateway("istio-ingress", "other", [_server(8443, ["b.example.com"], tls)], wider)
    assert [r for r, _, _ in _duplicates([foreign])] == [STACK_GATEWAY]


@pytest.mark.parametrize(
    "tls",
    [
        {"mode": "SIMPLE", "credentialName": "another-cert"},
        {"mode": "SIMPLE", "serverCertificate": "/etc/c.pem", "privateKey": "/etc/k.pem"},
        None,
    ],
)
def test_gateways_with_their_own_certificates_are_not_duplicates(tls):
    foreign = _gateway("istio-ingress", "other", [_server(8443, ["b.example.com"], tls)])
    assert _duplicates([foreign]) == []


def test_the_gateway_pods_namespace_is_not_judged_by_the_stacks_policy_pack():
    # prod is protected: mtls-strict asks a STRICT PeerAuthentication of every namespace the
    # *stack* runs workloads in; the snapshot's gateway pods in istio-ingress are not the stack's.
    config, objects = _prod()
    findings = check(config, objects, cluster=_healthy())
    assert [f for f in findings if f.fails] == []


def test_a_gateway_without_pods_is_reported_once_not_by_each_analyzer():
    # testdata/gateway-secrets.yaml `bogusgateway`: IngressGatewayPortAnalyzer and
    # SecretAnalyzer both report the selector; istioctl prints it once, its credential not at all.
    tls = {"mode": "SIMPLE", "credentialName": "missing"}
    bogus = _gateway("team-b", "bogus", [_server(443, ["b.example.com"], tls)], {"istio": "typo"})
    findings = [f for f in _gateway_findings([*_healthy(), bogus]) if f.resource != STACK_GATEWAY]
    assert [(f.code, f.message.split(":")[0]) for f in findings] == [
        ("IST0101", "Referenced selector not found")
    ]


def test_an_empty_gateway_selector_selects_every_pod():
    # klabels.SelectorFromSet of an empty map matches everything.
    anywhere = _gateway("team-b", "any", [_server(80, ["b.example.com"])], {})
    assert _gateway_findings([*_healthy(), anywhere]) == []
    # With no gateway pods, it selects the stack's model pods, whose Services lack port 80:
    # a finding the stack introduces on the cluster's Gateway (before it, it had no pods).
    (finding,) = [f for f in _gateway_findings([anywhere]) if f.resource == "Gateway team-b/any"]
    assert (finding.code, finding.origin) == ("IST0162", "introduced")
    assert "Pod selector )" in finding.message


def test_a_foreign_gateway_on_an_unexposed_port_is_the_clusters_warning():
    foreign = _gateway("team-b", "web", [_server(8081, ["web.example.com"])])
    (finding,) = _gateway_findings([*_healthy(), foreign])
    assert (finding.code, finding.severity, finding.origin, finding.path) == (
        "IST0162",
        "warning",
        "cluster",
        None,
    )
    assert "(port 8081)" in finding.message
