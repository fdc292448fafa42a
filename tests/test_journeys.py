"""Journeys of the committed stacks and examples, traced through their own objects: every
journey the config promises works, every one it must refuse is refused, and the tables below
pin where the important ones end (verdict, version split, container port)."""

from __future__ import annotations

import json

import pytest

from mesh.config import parse_config
from mesh.journeys import journeys
from mesh.stackfile import load_stack
from tests.conftest import PROJECT_DIR, run_mesh, with_value

STACK_FILES = [
    "dev",
    "prod",
    *sorted(str(p.relative_to(PROJECT_DIR)) for p in (PROJECT_DIR / "examples").glob("*.yaml")),
]


def _journeys(stack: str):
    return journeys(load_stack(str(PROJECT_DIR / stack) if "/" in stack else stack).config)


@pytest.mark.parametrize("stack", STACK_FILES)
def test_every_promised_journey_of_the_stack_holds(stack):
    found = _journeys(stack)
    failed = [f"{j.model}: {j.problem()}" for j in found if not j.passed]
    assert not failed, "\n".join(failed)
    groups = {j.group for j in found}
    assert {"ingress", "mesh", "pod"} <= groups


def _by_name(stack: str) -> dict[tuple[str, str], object]:
    return {(j.model, j.name): j for j in _journeys(stack)}


PROD = [
    # (model, journey, verdict, split, container port)
    ("sentiment", "REST https sentiment.models.example.com", "served", "v3 95% / v4 5%", 8501),
    ("sentiment", "gRPC https sentiment.models.example.com", "served", "v3 95% / v4 5%", 8500),
    ("sentiment", "REST http sentiment.models.example.com", "redirected", "", None),
    ("sentiment", "admin API gRPC HandleReloadConfigRequest", "denied", "v3 95% / v4 5%", 8500),
    ("sentiment", "REST from other-team/default (not a caller)", "dropped", "v3 95% / v4 5%", 8501),
    ("fraud", "gRPC https fraud.models.example.com", "served", "v7 100%", 8001),
    ("fraud", "gRPC from payments/payments-api", "served", "v7 100%", 8001),
    ("fraud", "REST from payments/payments-api without sidecar", "reset", "v7 100%", 8000),
    ("fraud", "admin API /v2/repository/models/fraud/load", "denied", "v7 100%", 8000),
    ("fraud", "fraud-v7 server → IMDS 169.254.169.254", "blackholed", "", None),
    ("fraud", "fraud-v7 server → registry.example.org (not registered)", "blackholed", "", None),
    ("fraud", "fraud-v7 server → S3 path-style s3.eu-west-1.amazonaws.com", "egress", "", None),
    ("fraud", "fraud-v7 Prometheus (monitoring) scrape :15020", "served", "", None),
]


@pytest.mark.parametrize(("model", "name", "verdict", "split", "port"), PROD)
def test_prod_journeys_end_where_the_table_says(model, name, verdict, split, port):
    journey = _by_name("prod")[(model, name)]
    result = journey.trace
    assert result.final().verdict == verdict
    assert result.split() == split
    ports = {b.container_port for b in result.branches if b.kind == "route"}
    assert ports == ({port} if port else set())


def test_grpc_through_the_gateway_reaches_each_version_on_its_grpc_port(dev):
    """The finding: a `port: 8500` match is dropped at the gateway (server port 80/443), so
    gRPC used to land on the REST port. Now the gateway block matches the gRPC content type."""
    raw = with_value(
        dev,
        "models.sentiment.matches.beta",
        {"version": "v2", "headers": {"x-beta-user": {"exact": "1"}}},
    )
    found = {j.name: j for j in journeys(parse_config(raw, "dev")) if j.model == "sentiment"}
    grpc = found["gRPC http sentiment.models.dev.example.com"].trace
    assert [(b.subset, b.share, b.container_port) for b in grpc.branches] == [
        ("v1", 90.0, 8500),
        ("v2", 10.0, 8500),
    ]
    rest = found["match beta sentiment.models.dev.example.com"]
    assert rest.passed and {b.subset for b in rest.trace.branches} == {"v2"}


def test_protected_refusals_are_refused_for_the_right_reason():
    found = _by_name("prod")
    refused = [j for j in found.values() if j.expect == "refused"]
    assert len(refused) >= 8
    assert all(not j.trace.ok for j in refused)


def test_an_unknown_caller_is_cut_by_the_network_policy_before_the_authorization_policy():
    journey = _by_name("prod")[("fraud", "REST from other-team/default (not a caller)")]
    (branch,) = journey.trace.branches
    assert [s.at for s in branch.steps][-1] == "networkpolicy"


def test_without_the_network_policy_the_authorization_policy_still_refuses_the_stranger(prod):
    raw = with_value(prod, "security.networkPolicy", False)
    found = {(j.model, j.name): j for j in journeys(parse_config(raw, "prod"))}
    journey = found[("fraud", "REST from other-team/default (not a caller)")]
    assert journey.passed and journey.trace.final().verdict == "denied"


def test_a_broken_route_fails_its_journey(prod):
    """A journey is not a snapshot of today's output: point the canary at a subset the
    DestinationRule lacks and the REST journeys fail with 503 NC."""
    from mesh.journeys import stack_objects

    config = parse_config(prod, "prod")
    objects = stack_objects(config)
    (vs,) = [o for o in objects.kind("VirtualService") if o["metadata"]["name"] == "sentiment"]
    vs["spec"]["http"][-1]["route"][1]["destination"]["subset"] = "v9"
    from mesh.journeys import ingress_journeys

    found = {j.name: j for j in ingress_journeys(config, objects, "sentiment")}
    rest = found["REST https sentiment.models.example.com"]
    assert not rest.passed and rest.trace.final().verdict == "no-cluster"


def test_trace_cli_prints_the_table_and_exits_0_on_prod():
    result = run_mesh("trace", "prod")
    assert result.returncode == 0, result.stderr
    assert "gRPC https sentiment.models.example.com" in result.stdout
    assert "0 failed" in result.stdout


def test_trace_cli_json_lists_every_journey_with_its_trace():
    result = run_mesh("trace", "prod", "--json")
    data = json.loads(result.stdout)
    assert data["stack"] == "prod"
    first = data["journeys"][0]
    assert {"group", "model", "journey", "expect", "passed", "trace"} <= set(first)
    assert first["trace"]["request"]["host"]


def test_trace_cli_answers_one_question_from_a_file(tmp_path):
    rendered = run_mesh("render", "prod", "-q").stdout
    path = tmp_path / "objects.yaml"
    path.write_text(rendered)
    result = run_mesh(
        "trace",
        "--with",
        str(path),
        "--from",
        "pod:payments/payments-api",
        "--request",
        "grpc://fraud.ml-serving:8001/inference.GRPCInferenceService/ModelInfer",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outbound|8001|v7|fraud.ml-serving.svc.cluster.local" in result.stdout
    refused = run_mesh(
        "trace",
        "--with",
        str(path),
        "--from",
        "pod:other/default",
        "--request",
        "http://fraud.ml-serving:8000/v2/models/fraud/infer",
        "-X",
        "POST",
    )
    assert refused.returncode == 1
    assert "dropped" in refused.stdout


def test_trace_cli_refuses_a_bad_request_url_with_one_line():
    result = run_mesh("trace", "prod", "--request", "ftp://x")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("ml-mesh: trace: --request 'ftp://x'")


FLAGGER_LOAD_TEST = {
    "url": "http://flagger-loadtester.test/",
    "cmd": "hey -z 1m -q 10 -c 2 http://sentiment-canary.ml-serving:8501/v1/models/sentiment",
}


def _progressive_prod(prod) -> dict:
    raw = with_value(prod, "models.sentiment.canary", {"version": "v4"})
    raw = with_value(raw, "models.sentiment.progressive", {"stepWeight": 5, "maxWeight": 30})
    return with_value(raw, "models.sentiment.progressive.loadTest", FLAGGER_LOAD_TEST)


def test_flagger_journeys_go_through_the_objects_flagger_creates(prod):
    config = parse_config(_progressive_prod(prod), "prod")
    found = {j.name: j for j in journeys(config) if j.model == "sentiment"}
    loadtest = found["loadtester test/default → sentiment-canary.ml-serving"]
    assert loadtest.passed, loadtest.problem()
    (branch,) = loadtest.trace.branches
    assert branch.workload == "Deployment ml-serving/sentiment"  # the canary pods
    rest = found["REST https sentiment.models.example.com"].trace
    assert [(b.host, b.share) for b in rest.branches] == [
        ("sentiment-primary.ml-serving.svc.cluster.local", 95.0),
        ("sentiment-canary.ml-serving.svc.cluster.local", 5.0),
    ]
    assert rest.ok
    assert not any(name.startswith("gRPC") for name in found), "Flagger serves REST only"


def test_the_load_test_is_refused_where_the_policy_does_not_admit_the_loadtester(prod):
    """The finding, as a journey: with the loadtester outside the canary's policy its
    requests get 403 (Flagger's built-in success rate would count them as successes)."""
    raw = with_value(
        _progressive_prod(prod),
        "models.sentiment.progressive.loadTest.serviceAccount",
        "test/flagger-loadtester",
    )
    config = parse_config(raw, "prod")
    from mesh.journeys import flagger_journeys, stack_objects

    objects = stack_objects(config)
    (policy,) = [
        o for o in objects.kind("AuthorizationPolicy") if o["metadata"]["name"] == "sentiment"
    ]
    principals = policy["spec"]["rules"][0]["from"][0]["source"]["principals"]
    principals.remove("cluster.local/ns/test/sa/flagger-loadtester")
    (journey,) = flagger_journeys(config, objects, "sentiment")
    assert not journey.passed
    assert journey.trace.final().status == 403


def test_with_native_sidecars_the_download_goes_through_the_proxy_and_the_lock_down(prod):
    """Classic mode: the download runs as UID 1337, past the proxy (a documented gap).
    Native mode: istio-proxy starts first, so the same download is captured and must find
    the model store and STS in the registry."""
    classic = {(j.model, j.name): j for j in journeys(parse_config(prod, "prod"))}
    native_raw = with_value(prod, "istio.nativeSidecars", True)
    native_raw = with_value(native_raw, "platform.kubernetesVersion", "1.29")
    native_raw = with_value(native_raw, "platform.istioVersion", "1.24")
    native = {(j.model, j.name): j for j in journeys(parse_config(native_raw, "prod"))}
    key = ("sentiment", "sentiment-v3 fetch-model → STS (IAM role)")
    assert classic[key].trace.outcome.verdict == "direct"
    assert native[key].trace.outcome.verdict == "egress" and native[key].passed
    outside = ("sentiment", "sentiment-v3 fetch-model → S3 path-style global s3.amazonaws.com")
    assert native[outside].trace.outcome.verdict == "blackholed"


def _gateway_deployment(account: str) -> dict:
    """The gateway install as `kubectl get deploy -n istio-system -o yaml` shows it."""
    labels = {"app": "public-ingress", "istio": "ingressgateway"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "public-ingress", "namespace": "istio-system"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": account, "containers": [{"name": "istio-proxy"}]},
            },
        },
    }


@pytest.mark.parametrize(("account", "works"), [("public-ingress", True), ("edge", False)])
def test_the_cluster_gateway_install_is_checked_against_the_policies(account, works):
    """With the cluster's gateway Deployment among the objects (`--with`), its real service
    account is the one the journeys use: another account than the stack assumes is refused."""
    config = load_stack(str(PROJECT_DIR / "examples/Pulumi.prod-like.yaml")).config
    found = {j.name: j for j in journeys(config, [_gateway_deployment(account)])}
    journey = found["REST https ranking.ml.acme.com"]
    assert journey.trace.source.service_account == account
    assert journey.passed is works


def test_a_match_rule_without_a_sample_value_is_shown_not_skipped(dev):
    raw = with_value(
        dev, "models.sentiment.matches.odd", {"version": "v2", "cookie": "^[a-f0-9]{32}$"}
    )
    found = {j.name: j for j in journeys(parse_config(raw, "dev")) if j.model == "sentiment"}
    journey = found["match odd sentiment.models.dev.example.com"]
    assert journey.expect is None
    assert journey.trace.outcome.verdict == "unmodelled"
