"""Second reading of `mesh check --with` against istioctl analyze (Istio 1.30.3): each test pins
a place where ml-mesh differed from Istio's analyzers or webhook, or grew quadratically with the
cluster's Gateways."""

from __future__ import annotations

from typing import Any

import pytest

from mesh.checks import check, gateway_workloads
from mesh.config import parse_config
from mesh.plan import build_plan
from tests.conftest import stack_raw
from tests.test_live_gateways import _gateway, _healthy, _pod, _server, _service


def _prod_findings(cluster: list[dict[str, Any]]):
    config = parse_config(stack_raw("prod"), "prod")
    return check(config, build_plan(config).objects(), cluster=cluster)


def _many_gateways(count: int, certificate: str | None = None) -> list[dict[str, Any]]:
    """`count` team Gateways on the shared ingress, port 443, each its own host; each its own
    certificate unless `certificate` names one they all share."""
    return [
        _gateway(
            f"team-{i}",
            "public",
            [
                _server(
                    443,
                    [f"team-{i}.example.com"],
                    {"mode": "SIMPLE", "credentialName": certificate or f"team-{i}-tls"},
                )
            ],
        )
        for i in range(count)
    ]


class _Counter:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)


def test_gateway_analyzers_stay_linear_in_the_clusters_gateways(monkeypatch):
    """IST0138 compared every Gateway with every other (selector subset, then every pair of
    servers) and IST0101/IST0162/IST0145 matched every pod against every Gateway's selector:
    a 2,000-object snapshot with 1,000 Gateways took 11 s. Gateways sharing no certificate are
    never compared, and pods are matched once per distinct selector."""
    subset = _Counter(gateway_workloads._subset)
    selects = _Counter(gateway_workloads.selects)
    monkeypatch.setattr(gateway_workloads, "_subset", subset)
    monkeypatch.setattr(gateway_workloads, "selects", selects)
    count = 300
    pods = [_pod("web", {"app": f"a{i}"}, name=f"p{i}") for i in range(100)]
    findings = _prod_findings([*_healthy(), *pods, *_many_gateways(count)])
    assert not [f for f in findings if f.code in ("IST0138", "IST0145")]
    assert subset.calls == 0  # no two Gateways share a certificate
    # a handful of distinct selectors (the teams' and the stack's) times the pods, not 300x
    assert selects.calls < 20 * (len(pods) + 10)


def test_shared_certificates_and_conflicts_are_still_found_among_many_gateways():
    cluster = [*_healthy(), *_many_gateways(50, certificate="wildcard-tls")]
    cluster.append(
        _gateway(
            "team-x",
            "twin",
            [_server(443, ["team-7.example.com"], {"mode": "SIMPLE", "credentialName": "x-tls"})],
        )
    )
    findings = _prod_findings(cluster)
    shared = [f for f in findings if f.code == "IST0138"]
    assert len(shared) == 50 * 49  # each of the 50 names each other one, once
    assert any(
        "[team-3/public team-4/public]" in f.message
        for f in shared
        if f.resource == "Gateway team-3/public"
    )
    conflicts = sorted(
        (f.resource, f.message.split(" (")[0]) for f in findings if f.code == "IST0145"
    )
    assert conflicts == [
        ("Gateway team-7/public", "Conflict with gateways team-x/twin"),
        ("Gateway team-x/twin", "Conflict with gateways team-7/public"),
    ]


def _external_name(name: str, ports: list[dict[str, Any]], type_: str = "ExternalName"):
    spec: dict[str, Any] = {"type": type_, "ports": ports}
    if type_ == "ExternalName":
        spec["externalName"] = "db.example.com"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "team-b"},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("type_", "port", "codes"),
    [
        # service/portname.go: `instance.IsUnsupported() || port.Name == "tcp" && ExternalName`,
        # then NewExternalNameServiceTypeInvalidPortName for an ExternalName Service
        ("ExternalName", {"name": "postgres", "port": 5432}, [("IST0150", "warning")]),
        ("ExternalName", {"name": "tcp", "port": 5432}, [("IST0150", "warning")]),
        ("ExternalName", {"name": "tcp-postgres", "port": 5432}, []),
        ("ExternalName", {"name": "https", "port": 443}, []),
        ("ClusterIP", {"name": "postgres", "port": 5432}, [("IST0118", "info")]),
        ("ClusterIP", {"name": "tcp", "port": 5432}, []),
    ],
)
def test_an_external_name_services_port_is_ist0150_as_istio_reports_it(type_, port, codes):
    """ml-mesh skipped ExternalName Services: istioctl reports IST0150 on them."""
    findings = _prod_findings([*_healthy(), _external_name("db", [port], type_)])
    found = [(f.code, f.severity) for f in findings if f.resource == "Service team-b/db"]
    assert found == codes
    assert all(f.origin == "cluster" for f in findings if f.resource == "Service team-b/db")


def _cluster_gateway(protocol: str, tls: dict[str, Any]) -> dict[str, Any]:
    server = {
        "port": {"number": 8080, "name": "web", "protocol": protocol},
        "hosts": ["web.team-b.example.com"],
        "tls": tls,
    }
    return _gateway("team-b", "web", [server])


@pytest.mark.parametrize(
    ("protocol", "tls", "refused"),
    [
        # validation.go validateServer: a plain-text HTTP-family port with a tls block is
        # refused unless `gateway.IsPassThroughServer` and no certificate file is set
        ("HTTP", {"httpsRedirect": True}, False),
        ("HTTP2", {"httpsRedirect": True}, False),
        ("GRPC", {"httpsRedirect": True}, False),
        ("HTTP", {"httpsRedirect": True, "minProtocolVersion": "TLSV1_2"}, False),
        ("HTTP", {"httpsRedirect": True, "mode": "AUTO_PASSTHROUGH"}, False),
        ("HTTP", {"httpsRedirect": True, "mode": "SIMPLE"}, True),
        ("HTTP", {"httpsRedirect": True, "privateKey": "/etc/key.pem"}, True),
        ("TCP", {"httpsRedirect": True}, True),
    ],
)
def test_a_plain_text_servers_tls_block_is_refused_as_istiods_webhook_refuses_it(
    protocol, tls, refused
):
    """ml-mesh refused any tls field but httpsRedirect and any protocol but HTTP: a foreign
    Gateway istiod admitted was reported as IST0106."""
    findings = _prod_findings([*_healthy(), _cluster_gateway(protocol, tls)])
    schema = [
        f.message
        for f in findings
        if f.resource == "Gateway team-b/web" and f.code == "IST0106" and ".tls" in f.message
    ]
    assert bool(schema) == refused, schema


@pytest.mark.parametrize("api_version", ["example.com/v1", "v1beta1", "core/v1"])
def test_a_secret_of_any_api_version_is_read_as_key_names_only(tmp_path, api_version):
    """Only `v1` Secrets were redacted: a `kind: Secret` under any other apiVersion kept its
    values in memory (not printed by any rule, but held against the snapshot's promise)."""
    from mesh.checks.snapshot import load_snapshot

    path = tmp_path / "cluster.yaml"
    path.write_text(
        f"apiVersion: {api_version}\nkind: Secret\nmetadata:\n  name: s\n  namespace: team-b\n"
        "  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: VALUE-1\n"
        "data: {token: VALUE-2}\nstringData: {password: VALUE-3}\n"
    )
    (secret,) = load_snapshot([str(path)])
    assert "VALUE" not in repr(secret)
    assert secret["apiVersion"] == api_version
    assert secret["data"] == {"token": "", "password": ""}


def _team_b_subset_target(replicas: int, pods: int) -> list[dict[str, Any]]:
    """team-b's api: a Service, a DestinationRule subset v1, its Deployment with `replicas`
    and `pods` live Pods of it."""
    labels = {"app": "api", "version": "v1"}
    return [
        _service(
            "team-b", {"app": "api"}, [{"name": "http", "port": 80, "protocol": "TCP"}], "api"
        ),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "api", "namespace": "team-b"},
            "spec": {"host": "api", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api-v1", "namespace": "team-b"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}},
            },
        },
        *[_pod("team-b", labels, name=f"api-v1-{i}") for i in range(pods)],
    ]


@pytest.mark.parametrize(
    ("replicas", "pods", "expected"),
    [
        (2, 2, []),
        # destinationrule/subset.go matches Pods only: a live Deployment without Pods (scaled
        # to 0, or held back by a quota) leaves the subset without pods, an Error
        (0, 0, [("IST0173", "error", "cluster")]),
        (2, 0, [("IST0173", "error", "cluster")]),
    ],
)
def test_a_live_deployment_does_not_stand_for_pods_the_snapshot_does_not_have(
    replicas, pods, expected
):
    """With a snapshot every Deployment's template counted as pods, the cluster's too: istioctl
    reads the cluster's Pods; only the stack's Deployments (whose Pods the rollout replaces)
    stand for pods."""
    findings = _prod_findings([*_healthy(), *_team_b_subset_target(replicas, pods)])
    found = [
        (f.code, f.severity, f.origin)
        for f in findings
        if f.resource == "DestinationRule team-b/api"
    ]
    assert found == expected


def _team_gateway_vs(destination: dict[str, Any], gateways: list[str] | None = None):
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "models", "namespace": "team-b"},
        "spec": {
            "hosts": ["models.team-b.example.com"],
            "gateways": ["public"] if gateways is None else gateways,
            "http": [{"route": [{"destination": destination}]}],
        },
    }


SENTIMENT = "sentiment.ml-serving.svc.cluster.local"


@pytest.mark.parametrize(
    ("vs", "reported"),
    [
        # destinationhosts.go analyzeSubset: a gateway-bound route without a subset to a host
        # another VirtualService splits by subsets (ml-mesh's canary)
        (_team_gateway_vs({"host": SENTIMENT, "port": {"number": 8501}}), True),
        (_team_gateway_vs({"host": SENTIMENT, "subset": "v3", "port": {"number": 8501}}), False),
        (_team_gateway_vs({"host": SENTIMENT, "port": {"number": 8501}}, gateways=[]), False),
        # hosts compared as written: a short name is another string
        (_team_gateway_vs({"host": "sentiment.ml-serving", "port": {"number": 8501}}), False),
    ],
)
def test_a_gateway_route_around_the_stacks_subsets_is_ist0140(vs, reported):
    """IST0140 (IngressRouteRulesNotAffected) was not reported: another team's gateway route to
    a model's host bypasses its canary split."""
    gateway = _gateway(
        "team-b", "public", [_server(80, ["models.team-b.example.com"])], selector={}
    )
    findings = _prod_findings([*_healthy(), gateway, vs])
    found = [
        (f.severity, f.origin, f.message.split(":")[0]) for f in findings if f.code == "IST0140"
    ]
    expected = (
        "warning",
        "introduced",
        "Subset in virtual service ml-serving/sentiment has no effect on ingress gateway "
        "team-b/models requests",
    )
    assert found == ([expected] if reported else [])


def _team_pod(name: str, **extra: Any) -> dict[str, Any]:
    pod = _pod("team-b", {"app": name, **extra.pop("labels", {})}, name=name)
    pod["metadata"].update(extra.pop("metadata", {}))
    pod["spec"] = {"containers": [{"name": "app", "image": "app:1"}], **extra}
    return pod


def _namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def test_pods_without_a_proxy_in_an_injected_namespace_are_ist0103():
    """injection/injection.go reports IST0103 on each Pod of an istio-injection=enabled
    namespace without an istio-proxy container; ml-mesh never looked at the Pods."""
    cluster = [
        *_healthy(),
        _namespace("team-b", {"istio-injection": "enabled"}),
        _namespace("team-c", {"istio.io/rev": "canary"}),  # not in Istio's injected set
        _team_pod("legacy"),
        _team_pod("meshed", containers=[{"name": "istio-proxy", "image": "proxyv2"}]),
        _team_pod("native", initContainers=[{"name": "istio-proxy", "image": "proxyv2"}]),
        _team_pod("opted-out", labels={"sidecar.istio.io/inject": "false"}),
        _team_pod(
            "opted-out-by-annotation",
            metadata={"annotations": {"sidecar.istio.io/inject": "False"}},
        ),
        _team_pod("host", hostNetwork=True),
        {**_team_pod("elsewhere"), "metadata": {"name": "elsewhere", "namespace": "team-c"}},
    ]
    findings = [f for f in _prod_findings(cluster) if f.code == "IST0103"]
    assert [(f.resource, f.severity, f.origin) for f in findings] == [
        ("Pod team-b/legacy", "warning", "cluster")
    ]
    assert findings[0].message.startswith(
        "The pod team-b/legacy is missing the Istio proxy. This can often be resolved by "
        "restarting or redeploying the workload."
    )
