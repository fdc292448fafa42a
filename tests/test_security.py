"""Mesh security: mTLS, who may call a model and on which API, egress lock-down, gateway TLS.

Protected stacks (prod) get all of it by default; dev gets each piece with one setting."""

from __future__ import annotations

import re

import pytest
import yaml

from mesh.config import ConfigError, parse_config
from mesh.stackfile import raw_project_config
from tests.conftest import EXAMPLES_DIR, of_kind, one, plan_objects, with_value
from tests.harness import run_program
from tests.istio_authz import Request, allows, value_matches

GATEWAY = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
PAYMENTS = "cluster.local/ns/payments/sa/payments-api"


@pytest.fixture
def prod_objects(prod) -> list[dict]:
    return plan_objects(prod, "prod")


def _refusal(raw: dict, stack: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, stack)
    return str(caught.value)


# --- mutual TLS ---------------------------------------------------------------------------------


def test_prod_namespace_accepts_mutual_tls_only(prod_objects):
    (peer,) = of_kind(prod_objects, "PeerAuthentication")
    assert peer["apiVersion"] == "security.istio.io/v1"
    assert peer["metadata"]["name"] == "default"
    assert peer["metadata"]["namespace"] == "ml-serving"
    # No selector and no port exceptions: the whole namespace, every port.
    assert peer["spec"] == {"mtls": {"mode": "STRICT"}}


def test_prod_destination_rules_call_models_with_istio_mutual_tls(prod_objects):
    rules = of_kind(prod_objects, "DestinationRule")
    assert len(rules) == 2
    for rule in rules:
        assert rule["spec"]["trafficPolicy"]["tls"] == {"mode": "ISTIO_MUTUAL"}


def test_dev_leaves_mtls_to_the_mesh_and_strict_is_one_setting_away(dev):
    objects = plan_objects(dev, "dev")
    assert not of_kind(objects, "PeerAuthentication")
    assert "trafficPolicy" not in one(objects, "DestinationRule", "sentiment")["spec"]
    objects = plan_objects(with_value(dev, "security.mtls", "STRICT"), "dev")
    assert one(objects, "PeerAuthentication", "default")["spec"]["mtls"]["mode"] == "STRICT"
    rule = one(objects, "DestinationRule", "sentiment")
    assert rule["spec"]["trafficPolicy"] == {"tls": {"mode": "ISTIO_MUTUAL"}}


def test_permissive_dev_namespace_is_said_explicitly_without_forcing_client_tls(dev):
    objects = plan_objects(with_value(dev, "security.mtls", "PERMISSIVE"), "dev")
    assert one(objects, "PeerAuthentication", "default")["spec"]["mtls"]["mode"] == "PERMISSIVE"
    assert "trafficPolicy" not in one(objects, "DestinationRule", "sentiment")["spec"]


def test_older_meshes_get_security_v1beta1(prod):
    objects = plan_objects(with_value(prod, "istio.apiVersion", "v1beta1"), "prod")
    security = [o for o in objects if o["apiVersion"].startswith("security.istio.io/")]
    assert {o["apiVersion"] for o in security} == {"security.istio.io/v1beta1"}
    assert one(objects, "Sidecar", "default")["apiVersion"] == "networking.istio.io/v1beta1"


# --- authorization ------------------------------------------------------------------------------


def test_prod_has_one_allow_policy_per_model_selecting_its_pods(prod_objects):
    policies = {p["metadata"]["name"]: p for p in of_kind(prod_objects, "AuthorizationPolicy")}
    assert sorted(policies) == ["fraud", "sentiment"]
    for name, policy in policies.items():
        assert policy["spec"]["action"] == "ALLOW"
        assert policy["spec"]["selector"] == {"matchLabels": {"app": name}}
        pods = [
            d["spec"]["template"]["metadata"]["labels"]
            for d in of_kind(prod_objects, "Deployment")
            if d["metadata"]["name"].startswith(f"{name}-")
        ]
        assert pods and all(labels["app"] == name for labels in pods)


def test_callers_are_the_gateway_and_the_configured_service_accounts(prod_objects):
    fraud = one(prod_objects, "AuthorizationPolicy", "fraud")
    sentiment = one(prod_objects, "AuthorizationPolicy", "sentiment")
    (fraud_rule,) = fraud["spec"]["rules"]
    assert fraud_rule["from"] == [{"source": {"principals": [GATEWAY, PAYMENTS]}}]
    (sentiment_rule,) = sentiment["spec"]["rules"]
    assert sentiment_rule["from"] == [{"source": {"principals": [GATEWAY]}}]


def test_gateway_identity_and_trust_domain_are_configurable(prod):
    raw = with_value(prod, "gateway.namespace", "ingress")
    raw = with_value(raw, "gateway.serviceAccount", "gateway")
    raw = with_value(raw, "security.trustDomain", "corp.example")
    policy = one(plan_objects(raw, "prod"), "AuthorizationPolicy", "fraud")
    assert policy["spec"]["rules"][0]["from"][0]["source"]["principals"] == [
        "corp.example/ns/ingress/sa/gateway",
        "corp.example/ns/payments/sa/payments-api",
    ]


# --- the gateway's identity: derived from the selector, never contradicting it -----------------


def _gateway(raw: dict) -> tuple[str, str]:
    config = parse_config(raw, "prod")
    return config.gateway_service_account(), config.gateway_principal()


def _sentiment_principals(raw: dict) -> list[str]:
    policy = one(plan_objects(raw, "prod"), "AuthorizationPolicy", "sentiment")
    return policy["spec"]["rules"][0]["from"][0]["source"]["principals"]


@pytest.mark.parametrize(
    "selector",
    [
        {"istio": "ingressgateway"},
        {"app": "istio-ingressgateway"},
        {"istio": "ingressgateway", "app": "istio-ingressgateway"},
    ],
)
def test_legacy_selector_derives_the_istioctl_gateway_service_account(prod, selector):
    raw = with_value(prod, "gateway.selector", selector)
    assert _gateway(raw) == ("istio-ingressgateway-service-account", GATEWAY)
    assert _sentiment_principals(raw) == [GATEWAY]


def test_istio_gateway_chart_selector_derives_the_release_service_account(prod):
    # `helm install istio-ingress istio/gateway -n istio-ingress`: pods labelled
    # app: istio-ingress, istio: ingress, running as ServiceAccount istio-ingress.
    raw = with_value(prod, "gateway.selector", {"app": "istio-ingress", "istio": "ingress"})
    raw = with_value(raw, "gateway.namespace", "istio-ingress")
    principal = "cluster.local/ns/istio-ingress/sa/istio-ingress"
    assert _gateway(raw) == ("istio-ingress", principal)
    assert _sentiment_principals(raw) == [principal]


def test_explicit_gateway_service_account_and_namespace_win_over_the_selector(prod):
    # A chart release with serviceAccount.name set: the app label no longer names the account.
    raw = with_value(prod, "gateway.selector", {"app": "public-ingress"})
    raw = with_value(raw, "gateway.serviceAccount", "edge-gateway")
    raw = with_value(raw, "gateway.namespace", "edge")
    principal = "cluster.local/ns/edge/sa/edge-gateway"
    assert _gateway(raw) == ("edge-gateway", principal)
    assert _sentiment_principals(raw) == [principal]


def test_gateway_principal_contradicting_the_gateway_is_refused_naming_the_path(prod):
    raw = with_value(prod, "gateway.selector", {"istio": "ingressgateway", "app": "public-ingress"})
    raw = with_value(raw, "security.gatewayPrincipal", GATEWAY)
    message = _refusal(raw, "prod")
    assert "'prod': security.gatewayPrincipal: " in message
    assert "'cluster.local/ns/istio-system/sa/public-ingress'" in message
    assert "gateway.serviceAccount" in message and "gateway.namespace" in message


def test_gateway_principal_agreeing_with_the_gateway_is_still_accepted(prod):
    raw = with_value(prod, "gateway.namespace", "istio-ingress")
    raw = with_value(raw, "gateway.serviceAccount", "istio-ingress")
    principal = "cluster.local/ns/istio-ingress/sa/istio-ingress"
    raw = with_value(raw, "security.gatewayPrincipal", principal)
    assert _sentiment_principals(raw) == [principal]


@pytest.mark.parametrize("selector", [{"istio": "eastwest"}, {"app": "Public_Ingress"}])
def test_underivable_gateway_service_account_must_be_given_when_authorizing(prod, dev, selector):
    message = _refusal(with_value(prod, "gateway.selector", selector), "prod")
    assert "'prod': gateway.serviceAccount: " in message
    assert "cannot be derived" in message
    # Without authorization nothing admits the gateway by identity: no reason to refuse.
    parse_config(with_value(dev, "gateway.selector", selector), "dev")
    raw = with_value(prod, "gateway.selector", selector)
    _gateway(with_value(raw, "gateway.serviceAccount", "eastwest"))


SENTIMENT_REQUESTS = [
    # (what, request, allowed)
    ("REST predict", Request(GATEWAY, 8501, "POST", "/v1/models/sentiment:predict"), True),
    ("REST classify", Request(GATEWAY, 8501, "POST", "/v1/models/sentiment:classify"), True),
    (
        "REST predict on a version",
        Request(GATEWAY, 8501, "POST", "/v1/models/sentiment/versions/3:predict"),
        True,
    ),
    ("model status", Request(GATEWAY, 8501, "GET", "/v1/models/sentiment"), True),
    ("model metadata", Request(GATEWAY, 8501, "GET", "/v1/models/sentiment/metadata"), True),
    (
        "gRPC Predict",
        Request(GATEWAY, 8500, "POST", "/tensorflow.serving.PredictionService/Predict"),
        True,
    ),
    (
        "another model whose name starts the same",
        Request(GATEWAY, 8501, "POST", "/v1/models/sentiment2:predict"),
        False,
    ),
    ("another model", Request(GATEWAY, 8501, "POST", "/v1/models/fraud:predict"), False),
    ("DELETE", Request(GATEWAY, 8501, "DELETE", "/v1/models/sentiment"), False),
    ("root", Request(GATEWAY, 8501, "GET", "/"), False),
    (
        "gRPC config reload",
        Request(
            GATEWAY, 8500, "POST", "/tensorflow.serving.ModelService/HandleReloadConfigRequest"
        ),
        False,
    ),
    (
        "an unknown workload",
        Request("cluster.local/ns/x/sa/y", 8501, "POST", "/v1/models/sentiment:predict"),
        False,
    ),
    ("plaintext, no identity", Request(None, 8501, "POST", "/v1/models/sentiment:predict"), False),
]

FRAUD_REQUESTS = [
    ("REST infer", Request(PAYMENTS, 8000, "POST", "/v2/models/fraud/infer"), True),
    ("model of the repository", Request(GATEWAY, 8000, "POST", "/v2/models/xgb/infer"), True),
    ("model ready", Request(GATEWAY, 8000, "GET", "/v2/models/fraud/ready"), True),
    ("server ready", Request(PAYMENTS, 8000, "GET", "/v2/health/ready"), True),
    (
        "gRPC infer",
        Request(PAYMENTS, 8001, "POST", "/inference.GRPCInferenceService/ModelInfer"),
        True,
    ),
    (
        "model load",
        Request(GATEWAY, 8000, "POST", "/v2/repository/models/fraud/load"),
        False,
    ),
    ("trace settings", Request(GATEWAY, 8000, "POST", "/v2/models/fraud/trace/setting"), False),
    ("log settings", Request(GATEWAY, 8000, "POST", "/v2/logging"), False),
    (
        "shared memory registration",
        Request(GATEWAY, 8000, "POST", "/v2/systemsharedmemory/region/x/register"),
        False,
    ),
    (
        "gRPC model unload",
        Request(GATEWAY, 8001, "POST", "/inference.GRPCInferenceService/RepositoryModelUnload"),
        False,
    ),
    ("metrics port", Request(GATEWAY, 8002, "GET", "/metrics"), False),
]


@pytest.mark.parametrize(
    ("request_", "allowed"),
    [r[1:] for r in SENTIMENT_REQUESTS],
    ids=[r[0] for r in SENTIMENT_REQUESTS],
)
def test_tensorflow_serving_policy_allows_inference_only(prod_objects, request_, allowed):
    assert allows(one(prod_objects, "AuthorizationPolicy", "sentiment"), request_) is allowed


@pytest.mark.parametrize(
    ("request_", "allowed"), [r[1:] for r in FRAUD_REQUESTS], ids=[r[0] for r in FRAUD_REQUESTS]
)
def test_triton_policy_allows_inference_only(prod_objects, request_, allowed):
    assert allows(one(prod_objects, "AuthorizationPolicy", "fraud"), request_) is allowed


def test_no_path_pattern_could_match_another_models_name(prod_objects):
    """`/v1/models/<m>*` would let `<m>2` through; only `<m>`, `<m>/...` and `<m>:...` may."""
    for policy in of_kind(prod_objects, "AuthorizationPolicy"):
        name = policy["metadata"]["name"]
        for operation in (t["operation"] for r in policy["spec"]["rules"] for t in r["to"]):
            for path in operation.get("paths", []):
                assert not value_matches(path, f"/v1/models/{name}2:predict"), path
                assert not value_matches(path, f"/v2/{name}x"), path


def test_custom_server_policy_covers_its_ports_and_configured_paths(prod):
    raw = with_value(prod, "models.fraud.server", "custom")
    raw = with_value(raw, "models.fraud.resources", {})
    raw = with_value(raw, "models.fraud.custom", {"httpPort": 9000, "grpcPort": 9001})
    policy = one(plan_objects(raw, "prod"), "AuthorizationPolicy", "fraud")
    assert policy["spec"]["rules"][0]["to"] == [{"operation": {"ports": ["9000", "9001"]}}]
    raw = with_value(raw, "models.fraud.custom.inferencePaths", ["/predict", "/v1/*"])
    policy = one(plan_objects(raw, "prod"), "AuthorizationPolicy", "fraud")
    assert allows(policy, Request(PAYMENTS, 9000, "POST", "/v1/score"))
    assert not allows(policy, Request(PAYMENTS, 9000, "POST", "/admin"))


def test_health_probes_are_rewritten_to_the_agent_on_every_pod(prod_objects):
    """Kubelet probes carry no mesh identity: Istio must send them to pilot-agent (15020),
    which calls the server from inside the pod, past mTLS and the ALLOW policy."""
    for deployment in of_kind(prod_objects, "Deployment"):
        template = deployment["spec"]["template"]
        assert template["metadata"]["annotations"]["sidecar.istio.io/rewriteAppHTTPProbers"] == (
            "true"
        )
        for container in template["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                # Only httpGet (and tcp/grpc) probes are rewritten; exec would bypass nothing.
                assert set(container[probe]) >= {"httpGet"}


def test_authorization_is_one_setting_away_in_dev_and_explicitly_off_in_prod(dev, prod):
    assert not of_kind(plan_objects(dev, "dev"), "AuthorizationPolicy")
    raw = with_value(dev, "security.authorization", True)
    assert [
        p["metadata"]["name"] for p in of_kind(plan_objects(raw, "dev"), "AuthorizationPolicy")
    ] == ["sentiment"]
    raw = with_value(prod, "security.authorization", False)
    assert not of_kind(plan_objects(raw, "prod"), "AuthorizationPolicy")


@pytest.mark.parametrize(
    ("path", "value", "hint"),
    [
        ("models.fraud.callers", ["payments"], "<namespace>/<serviceaccount>"),
        ("models.fraud.callers", ["a/b", "a/b"], "same service account twice"),
        ("security.gatewayPrincipal", "istio-ingressgateway", "SPIFFE principal"),
        ("security.gatewayPrincipal", "cluster.local/ns/*/sa/x", "SPIFFE principal"),
    ],
)
def test_bad_caller_settings_are_refused_naming_the_path(prod, path, value, hint):
    message = _refusal(with_value(prod, path, value), "prod")
    assert f"'prod': {path}" in message
    assert hint in message


def test_istio_path_forms_are_checked(dev):
    raw = with_value(dev, "models.sentiment.server", "custom")
    for bad in ("/a*b", "**", "v1/*", "/a b"):
        raw_bad = with_value(raw, "models.sentiment.custom", {"inferencePaths": [bad]})
        assert "not an Istio authorization path" in _refusal(raw_bad, "dev")
    for good in ("*", "/v1/*", "*:predict", "/predict"):
        raw_good = with_value(raw, "models.sentiment.custom", {"inferencePaths": [good]})
        parse_config(raw_good, "dev")


# --- egress -------------------------------------------------------------------------------------


def test_prod_egress_is_limited_to_the_namespace_istio_and_the_model_store(prod_objects):
    (sidecar,) = of_kind(prod_objects, "Sidecar")
    assert sidecar["metadata"]["name"] == "default"
    assert "workloadSelector" not in sidecar["spec"]  # namespace-wide
    assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    (listener,) = sidecar["spec"]["egress"]
    assert "port" not in listener
    entry_hosts = {h for e in of_kind(prod_objects, "ServiceEntry") for h in e["spec"]["hosts"]}
    assert "sts.eu-west-1.amazonaws.com" in entry_hosts
    assert listener["hosts"][:2] == ["./*", "istio-system/*"]
    assert sorted(listener["hosts"][2:]) == sorted(f"./{host}" for host in entry_hosts)
    for host in listener["hosts"]:
        # rule 48 of RULES.md: <namespace>/<dnsName>, namespace `.`, `*`, `~` or a label
        assert re.match(r"^([.*~]|[a-z0-9]([-a-z0-9]*[a-z0-9])?)/\S+$", host), host


def test_sidecar_waits_for_the_service_entries(prod):
    run = run_program(prod, stack="prod")
    sidecar = run.resource("Sidecar", "default")
    assert {name for _, name in sidecar.depends_on} >= {"model-store", "aws-sts"}


def test_egress_lockdown_in_dev_also_says_how_the_store_is_read(dev):
    """Dev reads the store with the node's role: locked down, that must be said explicitly
    (storage.nodeCredentials), or IMDS would be blackholed."""
    assert not of_kind(plan_objects(dev, "dev"), "Sidecar")
    raw = with_value(dev, "security.restrictEgress", True)
    assert "storage.nodeCredentials" in _refusal(raw, "dev")
    raw = with_value(raw, "storage.nodeCredentials", True)
    (sidecar,) = of_kind(plan_objects(raw, "dev"), "Sidecar")
    assert sidecar["spec"]["egress"][0]["hosts"][:2] == ["./*", "istio-system/*"]


# --- gateway TLS ----------------------------------------------------------------------------------


def test_client_certificates_can_be_required_at_the_gateway(prod):
    raw = with_value(prod, "gateway.tls.mode", "MUTUAL")
    gateway = one(plan_objects(raw, "prod"), "Gateway", "ml-gateway")
    http, https = gateway["spec"]["servers"]
    assert https["tls"] == {"mode": "MUTUAL", "credentialName": "models-example-com-tls"}
    assert http["tls"] == {"httpsRedirect": True}


PROTECTED_REFUSALS = [
    ("plain HTTP gateway", "gateway.tls", None, "gateway.tls: protected stacks serve HTTPS only"),
    (
        "no redirect",
        "gateway.tls.httpsRedirect",
        False,
        "gateway.tls.httpsRedirect: protected stacks redirect",
    ),
    ("permissive mTLS", "security.mtls", "PERMISSIVE", "security.mtls: protected stacks accept"),
    (
        "fault injection",
        "models.sentiment.fault",
        {"abort": {"httpStatus": 503, "percent": 1}},
        "models.sentiment.fault: fault injection is refused",
    ),
    (
        "model store over plain HTTP outside the cluster",
        "storage.endpoint",
        {"host": "s3.example.com", "tls": False},
        "storage.endpoint.tls: protected stacks reach",
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [r[1:] for r in PROTECTED_REFUSALS],
    ids=[r[0] for r in PROTECTED_REFUSALS],
)
def test_protected_stacks_refuse_weakening_settings(prod, path, value, expected):
    raw = with_value(prod, path, value)
    if value is None:
        *parent, last = path.split(".")
        node = raw
        for part in parent:
            node = node[part]
        del node[last]
    assert expected in _refusal(raw, "prod")


def test_the_same_settings_are_allowed_in_dev(dev):
    raw = with_value(dev, "security.mtls", "PERMISSIVE")
    raw = with_value(raw, "models.sentiment.fault", {"abort": {"httpStatus": 503, "percent": 1}})
    raw = with_value(raw, "storage.endpoint", {"host": "s3.example.com", "tls": False})
    parse_config(raw, "dev")


def test_protected_stacks_get_a_network_policy_per_model_that_admits_only_known_peers(prod):
    policy = one(plan_objects(prod, "prod"), "NetworkPolicy", "fraud")["spec"]
    assert policy["podSelector"] == {"matchLabels": {"app": "fraud"}}
    assert policy["policyTypes"] == ["Ingress"]
    servers, metrics = policy["ingress"]
    namespaces = [p["namespaceSelector"]["matchLabels"] for p in servers["from"]]
    assert namespaces == [
        {"kubernetes.io/metadata.name": "istio-system"},
        {"kubernetes.io/metadata.name": "payments"},
    ]
    assert servers["from"][0]["podSelector"] == {"matchLabels": {"istio": "ingressgateway"}}
    assert [p["port"] for p in servers["ports"]] == [8000, 8001]
    assert [p["port"] for p in metrics["ports"]] == [15020, 15090]


def test_network_policy_is_one_setting_away_in_dev_and_can_be_turned_off(dev, prod):
    assert not of_kind(plan_objects(dev), "NetworkPolicy")
    on = with_value(dev, "security.networkPolicy", True)
    assert {o["metadata"]["name"] for o in of_kind(plan_objects(on), "NetworkPolicy")} == {
        "sentiment"
    }
    off = with_value(prod, "security.networkPolicy", False)
    assert not of_kind(plan_objects(off, "prod"), "NetworkPolicy")


# --- the prod-like example: an istio/gateway chart release ---------------------------------------

PUBLIC_INGRESS = "cluster.local/ns/istio-system/sa/public-ingress"
PROD_LIKE_INFERENCE = {
    # model: an inference request its server answers
    "ranking": (8501, "POST", "/v1/models/ranking:predict"),
    "embeddings": (8000, "POST", "/v2/models/embeddings/infer"),
}


def test_prod_like_policies_admit_its_gateway_release_and_not_the_legacy_principal():
    raw = raw_project_config(yaml.safe_load((EXAMPLES_DIR / "Pulumi.prod-like.yaml").read_text()))
    policies = of_kind(plan_objects(raw, "prod-like"), "AuthorizationPolicy")
    assert sorted(p["metadata"]["name"] for p in policies) == sorted(PROD_LIKE_INFERENCE)
    for policy in policies:
        port, method, path = PROD_LIKE_INFERENCE[policy["metadata"]["name"]]
        assert allows(policy, Request(PUBLIC_INGRESS, port, method, path))
        assert not allows(policy, Request(GATEWAY, port, method, path))
