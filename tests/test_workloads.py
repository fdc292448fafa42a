"""Safe defaults of the rendered objects: pinned images, limits, hardened pods, the model
download in both sidecar modes, TLS at the gateway, egress to S3 and STS."""

from __future__ import annotations

import json

import pytest

from tests.conftest import one, plan_objects, stack_raw, with_value


def _pod(objects: list[dict], name: str) -> dict:
    return one(objects, "Deployment", name)["spec"]["template"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_container_is_hardened_limited_and_pinned(stack):
    for deployment in (
        o for o in plan_objects(stack_raw(stack), stack) if o["kind"] == "Deployment"
    ):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert ":" in container["image"].rsplit("/", 1)[-1] or "@" in container["image"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_deployment_selector_is_only_app_and_version(dev):
    deployment = one(plan_objects(dev), "Deployment", "sentiment-v2")
    assert deployment["spec"]["selector"] == {"matchLabels": {"app": "sentiment", "version": "v2"}}
    assert deployment["spec"]["template"]["metadata"]["labels"] == {
        "app": "sentiment",
        "version": "v2",
    }


def test_tensorflow_serving_reads_a_copy_made_through_the_native_sidecar(dev):
    pod = _pod(plan_objects(dev), "sentiment-v1")
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "true"
    (fetch,) = pod["spec"]["initContainers"]
    assert fetch["args"][:2] == ["s3://acme-models-dev/sentiment/1", "/models/sentiment/1"]
    assert "runAsUser" not in fetch["securityContext"]  # goes through the mesh, like the app
    (server,) = pod["spec"]["containers"]
    assert "--model_base_path=/models/sentiment" in server["args"]
    assert server["readinessProbe"]["httpGet"] == {
        "path": "/v1/models/sentiment",
        "port": "http-rest",
    }
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in server["volumeMounts"]


def test_without_native_sidecars_the_download_runs_as_the_proxy_uid(prod):
    pod = _pod(plan_objects(prod, "prod"), "sentiment-v3")
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "false"
    (fetch,) = pod["spec"]["initContainers"]
    assert fetch["securityContext"]["runAsUser"] == 1337


def test_every_server_waits_for_its_sidecar(prod):
    for name in ("sentiment-v3", "fraud-v7"):
        annotations = _pod(plan_objects(prod, "prod"), name)["metadata"]["annotations"]
        config = json.loads(annotations["proxy.istio.io/config"])
        assert config == {"holdApplicationUntilProxyStarts": True}


def test_triton_reads_s3_itself_with_a_gpu(prod):
    pod = _pod(plan_objects(prod, "prod"), "fraud-v7")
    assert "initContainers" not in pod["spec"]
    (server,) = pod["spec"]["containers"]
    assert "--model-repository=s3://acme-models-prod/fraud/repository-7" in server["args"]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert server["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert [p["containerPort"] for p in server["ports"]] == [8000, 8001, 8002]


def test_resources_override_preset_then_model_then_version(prod):
    raw = with_value(prod, "models.sentiment.versions.v4.resources", {"limits": {"memory": "6Gi"}})
    (server,) = _pod(plan_objects(raw, "prod"), "sentiment-v4")["spec"]["containers"]
    assert server["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "6Gi"},
    }


def test_gateway_terminates_tls_and_redirects_http(prod):
    gateway = one(plan_objects(prod, "prod"), "Gateway", "ml-gateway")
    http, https = gateway["spec"]["servers"]
    assert http["tls"] == {"httpsRedirect": True}
    assert https["port"] == {"number": 443, "name": "https", "protocol": "HTTPS"}
    assert https["tls"] == {"mode": "SIMPLE", "credentialName": "models-example-com-tls"}
    assert https["hosts"] == ["./fraud.models.example.com", "./sentiment.models.example.com"]


def test_egress_to_the_bucket_and_to_sts_only_with_iam_roles(dev, prod):
    dev_entries = [o for o in plan_objects(dev) if o["kind"] == "ServiceEntry"]
    assert [e["metadata"]["name"] for e in dev_entries] == ["model-store"]
    spec = dev_entries[0]["spec"]
    assert "acme-models-dev.s3.eu-west-1.amazonaws.com" in spec["hosts"]
    assert "s3.eu-west-1.amazonaws.com" in spec["hosts"]
    assert (spec["location"], spec["resolution"]) == ("MESH_EXTERNAL", "DNS")
    assert spec["ports"] == [{"number": 443, "name": "tls", "protocol": "TLS"}]
    prod_names = [
        o["metadata"]["name"] for o in plan_objects(prod, "prod") if o["kind"] == "ServiceEntry"
    ]
    assert prod_names == ["model-store", "aws-sts"]


def test_role_arn_annotates_the_service_account(prod):
    account = one(plan_objects(prod, "prod"), "ServiceAccount", "fraud")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ml-mesh-fraud-reader"
    }


def test_revision_label_replaces_the_injection_label(dev):
    namespace = plan_objects(with_value(dev, "istio.revision", "canary-1-22"))[0]
    labels = namespace["metadata"]["labels"]
    assert labels["istio.io/rev"] == "canary-1-22"
    assert "istio-injection" not in labels


def test_older_meshes_get_the_configured_istio_api(dev):
    objects = plan_objects(with_value(dev, "istio.apiVersion", "v1beta1"))
    istio = [o for o in objects if "networking.istio.io" in o["apiVersion"]]
    assert istio and {o["apiVersion"] for o in istio} == {"networking.istio.io/v1beta1"}
    # telemetry.istio.io/v1 is served from Istio 1.22 on, like networking v1
    (telemetry,) = [o for o in objects if o["kind"] == "Telemetry"]
    assert telemetry["apiVersion"] == "telemetry.istio.io/v1alpha1"


def test_custom_server_uses_its_ports_probe_and_model_dir(dev):
    raw = with_value(dev, "models.sentiment.server", "custom")
    raw = with_value(
        raw,
        "models.sentiment.custom",
        {"httpPort": 9000, "grpcPort": 9001, "readinessPath": "/ready", "modelDir": "/srv/model"},
    )
    objects = plan_objects(raw)
    service = one(objects, "Service", "sentiment")
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [
        ("http", 9000),
        ("grpc", 9001),
    ]
    pod = _pod(objects, "sentiment-v1")
    assert pod["spec"]["initContainers"][0]["args"][1] == "/srv/model"
    (server,) = pod["spec"]["containers"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    vs = one(objects, "VirtualService", "sentiment")
    assert [r["name"] for r in vs["spec"]["http"]] == ["grpc", "http"]
    assert vs["spec"]["http"][0]["match"][0] == {"gateways": ["mesh"], "port": 9001}
