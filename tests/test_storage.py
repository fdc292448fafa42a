"""The model store: S3-compatible endpoints (MinIO and the like) and credentials that never
appear in clear."""

from __future__ import annotations

import pytest

from mesh.checks import check, errors
from mesh.config import ConfigError, parse_config
from mesh.plan import build_plan
from mesh.trace import Objects, Request, trace_process
from tests import conformance
from tests.conftest import of_kind, one, plan_objects, with_value, without
from tests.harness import run_program, try_program

IN_CLUSTER = {"host": "minio.minio.svc.cluster.local", "port": 9000, "tls": False}
EXTERNAL = {"host": "objects.example.com", "port": 9443}
SECRET = {"name": "model-store-keys"}


def _pod(objects: list[dict], name: str) -> dict:
    return one(objects, "Deployment", name)["spec"]["template"]["spec"]


def _refusal(raw: dict, stack: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, stack)
    return str(caught.value)


@pytest.fixture
def prod_on_keys(prod) -> dict:
    """Prod reading its models with a key pair from a Secret instead of IAM roles."""
    raw = with_value(prod, "storage.credentialsSecret", SECRET)
    for name in ("sentiment", "fraud"):
        del raw["models"][name]["roleArn"]
    return raw


# --- S3-compatible endpoints --------------------------------------------------------------------


def test_an_external_store_gets_its_own_service_entry_and_sidecar_host(prod_on_keys):
    objects = plan_objects(with_value(prod_on_keys, "storage.endpoint", EXTERNAL), "prod")
    (entry,) = of_kind(objects, "ServiceEntry")  # no IAM roles: no STS either
    assert entry["spec"]["hosts"] == ["objects.example.com"]
    assert entry["spec"]["ports"] == [{"number": 9443, "name": "tls", "protocol": "TLS"}]
    assert (entry["spec"]["location"], entry["spec"]["resolution"]) == ("MESH_EXTERNAL", "DNS")
    sidecar = one(objects, "Sidecar", "default")
    assert sidecar["spec"]["egress"][0]["hosts"] == [
        "./*",
        "istio-system/*",
        "./objects.example.com",
    ]
    fetch = _pod(objects, "sentiment-v3")["initContainers"][0]
    assert fetch["args"][-2:] == ["--endpoint-url", "https://objects.example.com:9443"]
    (triton,) = _pod(objects, "fraud-v7")["containers"]
    assert (
        "--model-repository=s3://https://objects.example.com:9443/acme-models-prod/fraud/repository-7"
        in triton["args"]
    )


def test_an_in_cluster_store_over_plain_http_needs_no_service_entry(prod_on_keys):
    objects = plan_objects(with_value(prod_on_keys, "storage.endpoint", IN_CLUSTER), "prod")
    assert not of_kind(objects, "ServiceEntry")
    sidecar = one(objects, "Sidecar", "default")
    assert sidecar["spec"]["egress"][0]["hosts"] == [
        "./*",
        "istio-system/*",
        "minio/minio.minio.svc.cluster.local",
    ]
    fetch = _pod(objects, "sentiment-v3")["initContainers"][0]
    assert fetch["args"][-2:] == ["--endpoint-url", "http://minio.minio.svc.cluster.local:9000"]
    (triton,) = _pod(objects, "fraud-v7")["containers"]
    assert (
        "--model-repository=s3://minio.minio.svc.cluster.local:9000/acme-models-prod/fraud/repository-7"
        in triton["args"]
    )


def test_an_in_cluster_store_registers_no_empty_egress_component(prod_on_keys):
    run = run_program(with_value(prod_on_keys, "storage.endpoint", IN_CLUSTER), stack="prod")
    assert "ml-mesh:mesh:Egress" not in {r.type for r in run.resources}


def test_default_ports_follow_tls(dev):
    raw = with_value(dev, "storage.endpoint", {"host": "objects.example.com"})
    (entry,) = of_kind(plan_objects(raw, "dev"), "ServiceEntry")
    assert entry["spec"]["ports"] == [{"number": 443, "name": "tls", "protocol": "TLS"}]
    fetch = _pod(plan_objects(raw, "dev"), "sentiment-v1")["initContainers"][0]
    assert fetch["args"][-1] == "https://objects.example.com"
    raw = with_value(dev, "storage.endpoint", {"host": "objects.example.com", "tls": False})
    (entry,) = of_kind(plan_objects(raw, "dev"), "ServiceEntry")
    assert entry["spec"]["ports"] == [{"number": 80, "name": "http", "protocol": "HTTP"}]


def test_plain_http_to_an_in_cluster_store_is_fine_in_prod(prod_on_keys):
    parse_config(with_value(prod_on_keys, "storage.endpoint", IN_CLUSTER), "prod")


def test_an_endpoint_must_be_a_host_name(dev):
    raw = with_value(dev, "storage.endpoint", {"host": "http://minio:9000"})
    assert "storage.endpoint.host:" in _refusal(raw, "dev")


# --- credentials --------------------------------------------------------------------------------


def test_a_credentials_secret_reaches_the_fetcher_and_triton_by_reference(prod_on_keys):
    objects = plan_objects(prod_on_keys, "prod")
    expected = [
        {
            "name": "AWS_ACCESS_KEY_ID",
            "valueFrom": {"secretKeyRef": {"name": "model-store-keys", "key": "AWS_ACCESS_KEY_ID"}},
        },
        {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": "model-store-keys", "key": "AWS_SECRET_ACCESS_KEY"}
            },
        },
    ]
    fetch = _pod(objects, "sentiment-v3")["initContainers"][0]
    assert [e for e in fetch["env"] if "valueFrom" in e] == expected
    (server,) = _pod(objects, "sentiment-v3")["containers"]
    assert "env" not in server  # TF Serving reads the local copy: it never sees the keys
    (triton,) = _pod(objects, "fraud-v7")["containers"]
    assert [e for e in triton["env"] if "valueFrom" in e] == expected
    assert not of_kind(objects, "Secret")  # referenced, never created or copied


def test_secret_key_names_are_configurable(prod_on_keys):
    raw = with_value(
        prod_on_keys,
        "storage.credentialsSecret",
        {"name": "minio", "accessKeyIdKey": "rootUser", "secretAccessKeyKey": "rootPassword"},
    )
    (triton,) = _pod(plan_objects(raw, "prod"), "fraud-v7")["containers"]
    refs = [e["valueFrom"]["secretKeyRef"] for e in triton["env"] if "valueFrom" in e]
    assert refs == [{"name": "minio", "key": "rootUser"}, {"name": "minio", "key": "rootPassword"}]


def test_iam_roles_and_a_credentials_secret_do_not_mix(prod):
    raw = with_value(prod, "storage.credentialsSecret", SECRET)
    message = _refusal(raw, "prod")
    assert "models.sentiment.roleArn: storage.credentialsSecret is set" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG"),
        ("AWS_ACCESS_KEY_ID", "anything"),
        ("AWS_SESSION_TOKEN", "x"),
        ("HF_TOKEN", "hf_abc"),
        ("DB_PASSWORD", "x"),
        ("OPENAI_API_KEY", "sk-x"),
        ("STORE", "AKIAIOSFODNN7EXAMPLE"),
        ("TLS_KEY", "-----BEGIN RSA PRIVATE KEY-----"),
    ],
)
def test_credentials_in_clear_in_custom_env_are_refused(dev, name, value):
    raw = with_value(dev, "models.sentiment.server", "custom")
    raw = with_value(raw, "models.sentiment.custom", {"env": {name: value}})
    message = _refusal(raw, "dev")
    assert f"models.sentiment.custom.env.{name}: " in message
    assert f"custom.secretEnv.{name}" in message and "roleArn" in message


@pytest.mark.parametrize(
    "name", ["TOKENIZERS_PARALLELISM", "MAX_NEW_TOKENS", "LOG_LEVEL", "OMP_NUM_THREADS"]
)
def test_ordinary_settings_are_not_mistaken_for_credentials(dev, name):
    raw = with_value(dev, "models.sentiment.server", "custom")
    parse_config(with_value(raw, "models.sentiment.custom", {"env": {name: "8"}}), "dev")


def test_a_key_in_a_custom_argument_is_refused(dev):
    raw = with_value(dev, "models.sentiment.server", "custom")
    raw = with_value(raw, "models.sentiment.custom", {"args": ["--key=AKIAIOSFODNN7EXAMPLE"]})
    assert "models.sentiment.custom.args[0]: contains an access key" in _refusal(raw, "dev")


def test_custom_servers_read_credentials_from_existing_secrets(dev):
    raw = with_value(dev, "models.sentiment.server", "custom")
    raw = with_value(
        raw,
        "models.sentiment.custom",
        {"secretEnv": {"HF_TOKEN": {"secretName": "hugging-face", "key": "token"}}},
    )
    (server,) = _pod(plan_objects(raw, "dev"), "sentiment-v1")["containers"]
    assert {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hugging-face", "key": "token"}},
    } in server["env"]


def test_secret_custom_env_stays_secret_all_the_way_to_the_deployment(dev):
    raw = with_value(dev, "models.sentiment.server", "custom")
    raw = with_value(raw, "models.sentiment.custom", {"env": {"MODEL_FLAVOUR": "internal-7b"}})
    run = run_program(raw, secret_keys=("models",))
    for version in ("v1", "v2"):
        deployment = run.resource("Deployment", f"sentiment-{version}")
        assert deployment.secret_paths == ["spec"]
        (server,) = deployment.object()["spec"]["template"]["spec"]["containers"]
        assert {"name": "MODEL_FLAVOUR", "value": "internal-7b"} in server["env"]
    for registered in run.kubernetes:
        if "internal-7b" in str(registered.object()):
            assert registered.secret_paths, f"{registered.name} carries the value in clear"


def test_a_secret_store_reference_is_refused_as_a_secret(prod_on_keys):
    """A Secret's name and keys are references, not secrets: Pulumi cannot hide the name of an
    object anyway, so the program refuses rather than pretends."""
    raw = with_value(prod_on_keys, "storage.credentialsSecret", SECRET)
    run, error = try_program(raw, stack="prod", secret_keys=("storage",))
    assert "storage: cannot be a secret" in str(error)
    assert run.resources == []


# --- locked-down egress: how a model gets its credentials ----------------------------------------

IMDS = "169.254.169.254"
IMDS_TOKEN = Request(port=80, host=IMDS, method="PUT", path="/latest/api/token")


@pytest.fixture
def prod_on_the_node_role(prod) -> dict:
    """Prod with fraud (Triton, reads S3 itself) left without an IAM role of its own."""
    return without(prod, "models.fraud.roleArn")


def test_restricted_egress_without_credentials_is_refused_naming_the_three_ways_out(
    prod_on_the_node_role,
):
    message = _refusal(prod_on_the_node_role, "prod")
    assert "models.fraud.roleArn: egress is restricted (protected is true and " in message
    assert "security.restrictEgress is unset" in message
    assert f"instance metadata service ({IMDS}:80), which REGISTRY_ONLY blackholes" in message
    for way_out in ("models.fraud.roleArn", "storage.credentialsSecret", "storage.nodeCredentials"):
        assert way_out in message


def test_restricted_egress_in_dev_without_credentials_is_refused(dev):
    message = _refusal(with_value(dev, "security.restrictEgress", True), "dev")
    assert "models.sentiment.roleArn: egress is restricted (security.restrictEgress is true)" in (
        message
    )
    assert "storage.nodeCredentials: true" in message


def test_an_in_cluster_store_without_keys_is_refused_too(prod):
    """The download and Triton sign every request: with no keys they look for the node's role
    through IMDS just the same, whatever the store."""
    raw = with_value(prod, "storage.endpoint", IN_CLUSTER)
    for name in ("sentiment", "fraud"):
        raw = without(raw, f"models.{name}.roleArn")
    assert "storage.nodeCredentials" in _refusal(raw, "prod")


def test_unrestricted_stacks_still_read_with_the_node_role_without_any_opt_in(dev, prod):
    assert "instance-metadata" not in {e["metadata"]["name"] for e in _entries(dev, "dev")}
    parse_config(
        with_value(without(prod, "models.fraud.roleArn"), "security.restrictEgress", False), "prod"
    )


def _entries(raw: dict, stack: str) -> list[dict]:
    return of_kind(plan_objects(raw, stack), "ServiceEntry")


def test_node_credentials_make_the_instance_metadata_service_known(prod_on_the_node_role):
    raw = with_value(prod_on_the_node_role, "storage.nodeCredentials", True)
    objects = plan_objects(raw, "prod")
    entries = {e["metadata"]["name"]: e for e in of_kind(objects, "ServiceEntry")}
    assert set(entries) == {"model-store", "aws-sts", "instance-metadata"}  # sentiment: IRSA
    assert entries["instance-metadata"]["spec"] == {
        "hosts": ["instance-metadata.aws.internal"],
        "exportTo": ["."],
        "location": "MESH_EXTERNAL",
        "resolution": "STATIC",
        "ports": [{"number": 80, "name": "tcp", "protocol": "TCP"}],
        "addresses": [IMDS],
        "endpoints": [{"address": IMDS}],
    }
    assert conformance.problems(entries["instance-metadata"]) == []  # Istio 1.30 schema, CEL
    assert errors(check(parse_config(raw, "prod"), objects)) == []
    hosts = one(objects, "Sidecar", "default")["spec"]["egress"][0]["hosts"]
    assert "./instance-metadata.aws.internal" in hosts


def test_with_node_credentials_triton_reaches_imds_instead_of_the_blackhole(prod_on_the_node_role):
    raw = with_value(prod_on_the_node_role, "storage.nodeCredentials", True)
    plan = build_plan(parse_config(raw, "prod")).objects()
    objects = Objects(plan)
    pod = objects.pod("ml-serving/fraud-v7")
    assert trace_process(objects, pod, "server", IMDS_TOKEN).outcome.verdict == "egress"
    # ...and it is that ServiceEntry that does it.
    bare = Objects([o for o in plan if o["metadata"]["name"] != "instance-metadata"])
    traced = trace_process(bare, bare.pod("ml-serving/fraud-v7"), "server", IMDS_TOKEN)
    assert traced.outcome.verdict == "blackholed"


def test_node_credentials_beside_a_credentials_secret_are_refused(prod_on_keys):
    raw = with_value(prod_on_keys, "storage.nodeCredentials", True)
    message = _refusal(raw, "prod")
    assert "storage.nodeCredentials: storage.credentialsSecret is set" in message


def test_node_credentials_that_no_model_needs_are_refused(prod):
    message = _refusal(with_value(prod, "storage.nodeCredentials", True), "prod")
    assert "storage.nodeCredentials: every model has a roleArn" in message
