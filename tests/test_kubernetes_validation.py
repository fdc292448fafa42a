"""The Kubernetes API server's semantic validation, run on rendered plans (MESH0010-MESH0014).

Each rule has rows that must report and rows that must stay silent, the edge cases taken from
the Kubernetes sources the rules mirror (1000m is 1 CPU, 1Gi is not 1G, 63 characters pass and
64 do not, an empty label value is valid). Plans are real renders of the shipped stacks, edited
either through the stack config (what a user writes) or by mutating one rendered object (what a
builder bug would emit).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from mesh.checks import Finding, check, cpu_only_image, parse_quantity
from mesh.config import parse_config
from mesh.plan import build_plan
from tests.conftest import stack_raw, with_value

Objects = list[dict[str, Any]]
CODES = {"MESH0010", "MESH0011", "MESH0012", "MESH0013", "MESH0014"}


def _findings(raw: dict[str, Any], stack: str, edit: Callable[[Objects], Any] | None = None):
    config = parse_config(raw, stack)
    objects = copy.deepcopy(build_plan(config).objects())
    if edit is not None:
        edit(objects)
    return [f for f in check(config, objects) if f.code in CODES]


def _find(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _server(objects: Objects, name: str = "sentiment-v2") -> dict[str, Any]:
    return _find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def _fetch(objects: Objects, name: str = "sentiment-v2") -> dict[str, Any]:
    return _find(objects, "Deployment", name)["spec"]["template"]["spec"]["initContainers"][0]


def dev_after(edit: Callable[[Objects], Any]) -> list[Finding]:
    return _findings(stack_raw("dev"), "dev", edit)


def prod_after(edit: Callable[[Objects], Any]) -> list[Finding]:
    return _findings(stack_raw("prod"), "prod", edit)


def the(findings: list[Finding], code: str = "MESH0010") -> Finding:
    assert [f.code for f in findings] == [code], findings
    return findings[0]


# --- quantities: resource.ParseQuantity ------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("1000m", "1"),
        ("500m", "0.5"),
        (".5", "500m"),
        ("1k", "1e3"),
        ("1E3", "1000"),
        ("1Ki", "1024"),
        ("1Gi", "1073741824"),
        ("1G", "1000000000"),
        ("1.5Gi", "1536Mi"),
        ("1E", "1e18"),
        ("1Ei", str(2**60)),
        ("1u", "1000n"),
        ("0.1n", "1n"),  # finer than a nano unit rounds up, as Kubernetes rounds it
        (2, "2"),
    ],
)
def test_quantities_compare_by_value_not_text(left, right):
    assert parse_quantity(left) == parse_quantity(right)


def test_binary_and_decimal_suffixes_differ():
    assert parse_quantity("1Gi") > parse_quantity("1G")
    assert parse_quantity("1Mi") - parse_quantity("1M") == Decimal(48576)


@pytest.mark.parametrize("text", ["", ".", "1 Gi", "1gi", "1e", "1KiB", "abc", "+", "1.2.3", True])
def test_what_parse_quantity_refuses(text):
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


# --- requests and limits, after the preset merge ---------------------------------------------


def test_a_request_above_the_presets_limit_is_refused_naming_the_key_and_the_fix(dev):
    raw = with_value(dev, "models.sentiment.versions.v2.resources", {"requests": {"cpu": "4"}})
    finding = the(_findings(raw, "dev"))
    assert finding.severity == "error"
    assert finding.path == "models.sentiment.versions.v2.resources.requests.cpu"
    assert finding.resource == "Deployment ml-serving/sentiment-v2"
    assert "requests cpu 4 but its limit is 2 (the tensorflow-serving preset's)" in finding.message
    assert "must be less than or equal to cpu limit of 2" in finding.message
    assert (
        "raise models.sentiment.versions.v2.resources.limits.cpu to at least 4" in finding.message
    )
    assert "validateResourceRequirements" in finding.message


def test_a_model_wide_limit_below_the_presets_request_names_the_limit_key(dev):
    raw = with_value(dev, "models.sentiment.resources", {"limits": {"memory": "512Mi"}})
    findings = _findings(raw, "dev")
    assert {f.resource for f in findings} == {
        "Deployment ml-serving/sentiment-v1",
        "Deployment ml-serving/sentiment-v2",
    }
    assert {f.path for f in findings} == {"models.sentiment.resources.limits.memory"}
    assert all("requests memory 1Gi" in f.message for f in findings)


@pytest.mark.parametrize(
    ("requests", "limits", "refused"),
    [
        ({"cpu": "2000m"}, {"cpu": "2"}, False),  # equal by value
        ({"cpu": "2001m"}, {"cpu": "2"}, True),
        ({"memory": "2Gi"}, {"memory": "2048Mi"}, False),
        ({"memory": "2Gi"}, {"memory": "2G"}, True),  # 2147483648 > 2000000000
        ({"memory": "2G"}, {"memory": "2Gi"}, False),
        ({"cpu": "0.5"}, {"cpu": "500m"}, False),
    ],
)
def test_requests_compare_with_limits_by_quantity(dev, requests, limits, refused):
    raw = with_value(
        dev, "models.sentiment.versions.v2.resources", {"requests": requests, "limits": limits}
    )
    findings = _findings(raw, "dev")
    assert bool(findings) is refused, findings


def test_init_containers_are_checked_too_and_name_no_config_key():
    def edit(objects):
        _fetch(objects)["resources"]["requests"]["cpu"] = "2"

    finding = the(dev_after(edit))
    assert finding.path is None
    assert "container 'fetch-model' requests cpu 2 but its limit is 1" in finding.message


@pytest.mark.parametrize(
    ("requests", "limits", "phrase"),
    [
        ({"nvidia.com/gpu": "1"}, {"nvidia.com/gpu": "2"}, "must be equal to nvidia.com/gpu limit"),
        ({"nvidia.com/gpu": "1"}, {}, "Limit must be set for non overcommitable resources"),
        ({"nvidia.com/gpu": "500m"}, {"nvidia.com/gpu": "500m"}, "must be an integer"),
        ({"cpu": "-1"}, {}, "must be greater than or equal to 0"),
        ({"cpu": "1 cpu"}, {}, "is not a quantity"),
        ({"gpu": "1"}, {"gpu": "1"}, "must be a standard resource for containers"),
    ],
)
def test_extended_resources_are_never_overcommitted_and_quantities_must_parse(
    requests, limits, phrase
):
    def edit(objects):
        resources = _server(objects)["resources"]
        resources["requests"].update(requests)
        resources["limits"].update(limits)

    refusals = [f for f in dev_after(edit) if f.code == "MESH0010"]
    assert any(phrase in f.message for f in refusals), refusals


def test_a_gpu_limit_without_a_request_is_valid(dev):
    """The API server defaults the request to the limit; only a request alone is refused."""

    def edit(objects):
        _server(objects)["resources"]["limits"]["nvidia.com/gpu"] = "1"
        _server(objects)["image"] = "tensorflow/serving:2.16.1-gpu"

    assert dev_after(edit) == []


def test_resources_gpu_sets_request_and_limit_equal(prod):
    """prod's fraud model asks for resources.gpu: 1 and passes."""
    assert _findings(prod, "prod") == []


# --- names, labels, annotations: ValidateObjectMeta ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "name", "refused"),
    [
        ("Service", "sentiment", False),
        ("Service", "3d-model", True),  # DNS-1035: must start with a letter
        ("Service", "a.b", True),
        ("Service", "a" * 63, False),
        ("Service", "a" * 64, True),
        ("ServiceAccount", "a.b", False),  # DNS-1123 subdomain
        ("ServiceAccount", "3d-model", False),
        ("Deployment", "Sentiment-v2", True),
        ("Deployment", "a" * 253, False),
        ("Deployment", "a" * 254, True),
        ("Deployment", "-v2", True),
        ("Namespace", "ml.serving", True),  # a DNS-1123 label
        ("Namespace", "9ml", False),
    ],
)
def test_metadata_name_follows_the_kinds_name_function(kind, name, refused):
    original = {"Service": "sentiment", "ServiceAccount": "sentiment"}
    original |= {"Deployment": "sentiment-v2", "Namespace": "ml-serving"}

    def edit(objects):
        _find(objects, kind, original[kind])["metadata"]["name"] = name

    findings = [f for f in dev_after(edit) if "metadata.name" in f.message]
    assert bool(findings) is refused, findings
    if refused:
        assert findings[0].severity == "error"


def _label(objects: Objects, key: str, value: Any) -> None:
    _find(objects, "ConfigMap", _configmaps(objects)[0])["metadata"]["labels"][key] = value


def _configmaps(objects: Objects) -> list[str]:
    return [o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"]


@pytest.mark.parametrize(
    ("key", "value", "refused"),
    [
        ("team", "", False),  # an empty label value is valid
        ("team", "a" * 63, False),
        ("team", "a" * 64, True),
        ("team", "-x", True),
        ("team", "A_b.c-D", False),
        ("team", 3, True),
        ("a" * 63, "x", False),
        ("a" * 64, "x", True),
        ("example.com/team", "x", False),
        (f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 61}/team", "x", False),  # 253-char prefix
        (f"{'a' * 63}.{'b' * 63}.{'c' * 63}.{'d' * 62}/team", "x", True),  # 254
        ("Example.com/team", "x", True),
        ("/team", "x", True),
        ("a/b/c", "x", True),
    ],
)
def test_label_keys_and_values(prod, key, value, refused):
    findings = _findings(prod, "prod", lambda objects: _label(objects, key, value))
    assert bool(findings) is refused, findings


def test_pod_template_labels_are_checked(dev):
    def edit(objects):
        _find(objects, "Deployment", "sentiment-v2")["spec"]["template"]["metadata"]["labels"][
            "tier"
        ] = "x" * 64

    findings = dev_after(edit)
    assert any("spec.template.metadata.labels[tier]" in f.message for f in findings), findings


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
def test_annotations_may_total_256_kib(extra, refused):
    def edit(objects):
        annotations = _find(objects, "ServiceAccount", "sentiment")["metadata"].setdefault(
            "annotations", {}
        )
        used = sum(len(k) + len(v) for k, v in annotations.items())
        annotations["note"] = "x" * (256 * 1024 - used - len("note") + extra)

    findings = dev_after(edit)
    assert bool(findings) is refused, findings
    if refused:
        assert "may not be more than 262144 bytes" in the(findings).message


# --- containers, ports, env: validateContainers, validateContainerPorts, ValidateEnv ----------


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda c: c.update(name="Server"), "a lowercase RFC 1123 label"),
        (lambda c: c.update(name="fetch-model"), "Duplicate value 'fetch-model'"),
        (lambda c: c["ports"][0].update(name="http-rest-api-port"), "no more than 15"),
        (lambda c: c["ports"][0].update(name="8501"), "at least one letter"),
        (lambda c: c["ports"][0].update(name="http--rest"), "consecutive hyphens"),
        (lambda c: c["ports"][0].update(name="HTTP"), "alpha-numeric characters"),
        (lambda c: c["ports"][1].update(name="http-rest"), "Duplicate value 'http-rest'"),
        (lambda c: c["ports"][0].update(containerPort=0), "between 1 and 65535"),
        (lambda c: c["ports"][0].update(protocol="HTTP"), "Unsupported value 'HTTP'"),
    ],
)
def test_container_rules_are_refused(edit, phrase):
    findings = dev_after(lambda objects: edit(_server(objects)))
    assert any(f.code == "MESH0010" and phrase in f.message for f in findings), findings


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c["ports"][0].update(name="a" * 15),
        lambda c: c["ports"][0].update(name="h2c"),
        lambda c: c["ports"][0].update(protocol="UDP"),
        lambda c: c.update(name="a" * 63),
    ],
)
def test_valid_container_edits_stay_silent(edit):
    """Silent at MESH0010 (a renamed port may orphan a Service targetPort: MESH0012)."""
    findings = dev_after(lambda objects: edit(_server(objects)))
    assert [f for f in findings if f.code == "MESH0010"] == [], findings


def test_a_port_name_two_containers_share_is_a_warning():
    def edit(objects):
        _fetch(objects)["ports"] = [{"name": "http-rest", "containerPort": 9000}]

    finding = the(dev_after(edit), "MESH0011")
    assert "also a port of container" in finding.message


@pytest.mark.parametrize(
    ("version", "name", "refused"),
    [
        ("1.31", "MY_VAR", False),
        ("1.31", "my.env-name", False),
        ("1.31", "1X", True),  # IsEnvVarName: must not start with a digit
        ("1.31", "..X", True),
        ("1.32", "1X", False),  # IsRelaxedEnvVarName from 1.32
        ("1.32", "A=B", True),
        ("1.37", "", True),
    ],
)
def test_env_var_names_follow_the_clusters_rule(dev, version, name, refused):
    raw = with_value(dev, "platform.kubernetesVersion", version)

    def edit(objects):
        _server(objects).setdefault("env", []).append({"name": name, "value": "x"})

    findings = _findings(raw, "dev", edit)
    assert bool(findings) is refused, findings


def test_an_env_var_set_twice_is_a_warning():
    def edit(objects):
        _fetch(objects)["env"].append({"name": "HOME", "value": "/elsewhere"})

    finding = the(dev_after(edit), "MESH0011")
    assert "hides previous definition of 'HOME'" in finding.message


# --- Deployments: ValidateDeploymentSpec -----------------------------------------------------


def _deployment(objects: Objects) -> dict[str, Any]:
    return _find(objects, "Deployment", "sentiment-v2")


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (
            lambda d: d["spec"]["selector"]["matchLabels"].update(version="v3"),
            "`selector` does not match template `labels`",
        ),
        (lambda d: d["spec"].update(selector={}), "empty selector is invalid for deployment"),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxSurge=0),
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            lambda d: d["spec"]["strategy"].update(
                rollingUpdate={"maxSurge": "0%", "maxUnavailable": 0}
            ),
            "may not be 0 when `maxSurge` is 0",
        ),
        (
            lambda d: d["spec"]["strategy"]["rollingUpdate"].update(maxUnavailable="150%"),
            "must not be greater than 100%",
        ),
        (lambda d: d["spec"].update(minReadySeconds=5000), "must be greater than minReadySeconds"),
        (lambda d: d["spec"].update(replicas=-1), "must be greater than or equal to 0"),
    ],
)
def test_deployment_spec_rules(edit, phrase):
    findings = dev_after(lambda objects: edit(_deployment(objects)))
    assert any(f.code == "MESH0010" and phrase in f.message for f in findings), findings


def test_a_selector_that_is_a_subset_of_the_template_labels_matches():
    def edit(objects):
        _deployment(objects)["spec"]["selector"] = {
            "matchExpressions": [{"key": "version", "operator": "In", "values": ["v2", "v3"]}]
        }

    assert dev_after(edit) == []


def test_rollout_strategies_point_at_the_rollout_key():
    def edit(objects):
        _deployment(objects)["spec"]["strategy"]["rollingUpdate"] = {
            "maxSurge": 0,
            "maxUnavailable": 0,
        }

    assert the(dev_after(edit)).path == "models.sentiment.rollout"


# --- Services: ValidateService ---------------------------------------------------------------


def _service(objects: Objects) -> dict[str, Any]:
    return _find(objects, "Service", "sentiment")


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda s: s["spec"]["ports"][1].pop("name"), "every port needs a name"),
        (lambda s: s["spec"]["ports"][1].update(name="http-rest"), "Duplicate value 'http-rest'"),
        (lambda s: s["spec"]["ports"][1].update(port=8501), "port 8501/TCP is already a port"),
        (lambda s: s["spec"]["ports"][0].update(name="Http"), "a lowercase RFC 1123 label"),
        (lambda s: s["spec"]["ports"][0].update(targetPort=0), "between 1 and 65535"),
        (lambda s: s["spec"]["ports"][0].update(targetPort="Rest"), "alpha-numeric characters"),
        (lambda s: s["spec"]["ports"][0].update(protocol="HTTP"), "Unsupported value 'HTTP'"),
        (lambda s: s["spec"].update(ports=[]), "spec.ports: Required value"),
        (lambda s: s["spec"]["selector"].update(app="x" * 64), "no more than 63"),
    ],
)
def test_service_rules(edit, phrase):
    findings = dev_after(lambda objects: edit(_service(objects)))
    assert any(f.code == "MESH0010" and phrase in f.message for f in findings), findings


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s["spec"]["ports"][1].update(port=8501, protocol="UDP", targetPort=8501),
        lambda s: s["spec"].update(ports=[s["spec"]["ports"][0] | {"name": None}]),
        lambda s: s["spec"]["ports"][0].update(targetPort=8501),
    ],
)
def test_valid_service_edits_stay_silent(edit):
    """Same port on another protocol; one unnamed port; a numeric targetPort."""
    assert dev_after(lambda objects: edit(_service(objects))) == []


def test_a_service_selector_that_matches_no_pod_is_a_warning():
    findings = dev_after(
        lambda objects: _service(objects)["spec"]["selector"].update(app="sentimnt")
    )
    # the subsets, whose pods are no longer behind the Service, are errors of their own
    # (mesh.checks.destinations: istioctl's IST0173 matches a subset's labels alone)
    subsets = [f for f in findings if f.resource.startswith("DestinationRule")]
    assert {(f.code, f.severity) for f in subsets} == {("MESH0012", "error")}
    finding = the([f for f in findings if f not in subsets], "MESH0012")
    assert finding.path == "models.sentiment" and finding.severity == "warning"
    assert "no endpoints" in finding.message


def test_a_named_target_port_no_selected_pod_has_is_a_warning():
    def edit(objects):
        _server(objects)["ports"][1]["name"] = "grpc-api"

    finding = the(dev_after(edit), "MESH0012")
    assert "targetPort 'grpc' is no container port of 1 of the 2 pod template(s)" in (
        finding.message
    )


# --- HorizontalPodAutoscalers ----------------------------------------------------------------


def _hpa(objects: Objects) -> dict[str, Any]:
    return _find(objects, "HorizontalPodAutoscaler", "sentiment-v3")


@pytest.mark.parametrize(
    ("edit", "phrase", "path"),
    [
        (
            lambda h: h["spec"].update(minReplicas=0),
            "must be greater than or equal to 1",
            "models.sentiment.versions.v3.replicas",
        ),
        (
            lambda h: h["spec"].update(minReplicas=13),
            "must be greater than or equal to `minReplicas` (13)",
            "models.sentiment.autoscaling.maxReplicas",
        ),
        (
            lambda h: h["spec"]["metrics"][0].update(type="Pods"),
            "must populate information for the given metric source",
            "models.sentiment.autoscaling",
        ),
        (
            lambda h: h["spec"]["metrics"][0]["resource"]["target"].update(averageUtilization=0),
            "must be greater than 0",
            "models.sentiment.autoscaling",
        ),
        (
            lambda h: h["spec"]["metrics"][0]["resource"]["target"].update(type="Value"),
            "must set value for a Value target",
            "models.sentiment.autoscaling",
        ),
    ],
)
def test_autoscaler_rules(edit, phrase, path):
    findings = prod_after(lambda objects: edit(_hpa(objects)))
    assert {(f.code, f.path) for f in findings} == {("MESH0010", path)}, findings
    assert any(phrase in f.message for f in findings), findings


def test_min_replicas_equal_to_max_is_valid():
    assert prod_after(lambda objects: _hpa(objects)["spec"].update(minReplicas=12)) == []


def test_an_hpa_that_targets_no_deployment_of_the_stack_is_a_warning():
    def edit(objects):
        _hpa(objects)["spec"]["scaleTargetRef"]["name"] = "sentiment-v9"

    assert "FailedGetScale" in the(prod_after(edit), "MESH0012").message


# --- PodDisruptionBudgets --------------------------------------------------------------------


def _pdb(objects: Objects, name: str = "sentiment-v4") -> dict[str, Any]:
    return _find(objects, "PodDisruptionBudget", name)


def _budget(spec: dict[str, Any], name: str = "sentiment-v4") -> Callable[[Objects], None]:
    def edit(objects):
        pdb = _pdb(objects, name)["spec"]
        pdb.pop("maxUnavailable")
        pdb.update(spec)

    return edit


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        ({"minAvailable": 2}, "MESH0013"),  # sentiment-v4 runs 2 replicas
        ({"minAvailable": 3}, "MESH0013"),
        ({"minAvailable": "100%"}, "MESH0013"),
        ({"maxUnavailable": 0}, "MESH0013"),
        ({"maxUnavailable": "0%"}, "MESH0013"),
        ({"minAvailable": 1, "maxUnavailable": 1}, "MESH0010"),
        ({"maxUnavailable": "150%"}, "MESH0010"),
        ({"maxUnavailable": "one"}, "MESH0010"),
        ({"maxUnavailable": 1, "unhealthyPodEvictionPolicy": "Never"}, "MESH0010"),
    ],
)
def test_disruption_budget_rules(spec, code):
    finding = the(prod_after(_budget(spec)), code)
    if code == "MESH0013":
        assert finding.severity == "warning"
        assert "kubectl drain" in finding.message and "429" in finding.message
        assert finding.path == "models.sentiment.versions.v4.replicas"


@pytest.mark.parametrize(
    "spec", [{"minAvailable": 1}, {"minAvailable": "50%"}, {"maxUnavailable": "10%"}]
)
def test_budgets_that_leave_an_eviction_stay_silent(spec):
    """2 replicas: minAvailable 1 or 50% leaves one eviction; 10% of 2 rounds up to 1."""
    assert prod_after(_budget(spec)) == []


def test_a_budget_that_selects_no_pod_is_a_warning():
    def edit(objects):
        _pdb(objects)["spec"]["selector"]["matchLabels"]["version"] = "v9"

    assert "protects nothing" in the(prod_after(edit), "MESH0012").message


def test_an_autoscaled_version_counts_its_hpa_minimum(prod):
    """sentiment-v3's Deployment has no replicas (its HPA owns them): minAvailable equal to the
    HPA's minimum blocks drains whenever the version is scaled in."""
    raw = with_value(prod, "models.sentiment.versions.v3.replicas", 3)
    findings = _findings(raw, "prod", _budget({"minAvailable": 3}, "sentiment-v3"))
    assert "with 3 selected pod(s)" in the(findings, "MESH0013").message


@pytest.fixture
def progressive(prod) -> dict[str, Any]:
    raw = with_value(prod, "models.sentiment.canary", {"version": "v4"})
    return with_value(raw, "models.sentiment.progressive", {"stepWeight": 5, "maxWeight": 30})


def test_the_primary_budget_matches_the_pods_flagger_will_create(progressive):
    assert _findings(progressive, "prod") == []

    def without_canary(objects):
        objects[:] = [o for o in objects if o["kind"] != "Canary"]

    finding = the(_findings(progressive, "prod", without_canary), "MESH0012")
    assert finding.resource == "PodDisruptionBudget ml-serving/sentiment-primary"


# --- GPU on a CPU-only image -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "cpu_only"),
    [
        ("tensorflow/serving:2.16.1", True),
        ("tensorflow/serving:2.16.1-gpu", False),
        ("docker.io/tensorflow/serving:latest-gpu", False),
        ("tensorflow/serving:2.16.1@sha256:" + "a" * 64, True),
        ("tensorflow/serving@sha256:" + "a" * 64, False),  # no tag: nothing to read
        ("pytorch/torchserve:0.11.0-cpu", True),
        ("pytorch/torchserve:latest", True),
        ("pytorch/torchserve:0.11.0-gpu", False),
        ("nvcr.io/nvidia/tritonserver:24.08-py3", False),
        ("vllm/vllm-openai:v0.6.3", False),
        ("public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo:v0.8.5", True),
        ("ghcr.io/acme/churn-server:1.4.2", False),
        ("ghcr.io/acme/churn-server:1.4.2-cpu", True),
        ("registry.local:5000/acme/server:2.0", False),  # a registry port is no tag
    ],
)
def test_cpu_only_images_by_their_tag_convention(image, cpu_only):
    assert (cpu_only_image(image) is not None) is cpu_only


def test_a_gpu_for_a_cpu_build_of_tensorflow_serving_is_a_warning_on_the_image_key(dev):
    raw = with_value(dev, "models.sentiment.versions.v1.resources", {"gpu": 1})
    finding = the(_findings(raw, "dev"), "MESH0014")
    assert finding.path == "models.sentiment.versions.v1.image"
    assert "(use 2.15.0-gpu)" in finding.message


def test_a_gpu_for_a_gpu_build_is_silent(dev):
    raw = with_value(dev, "models.sentiment.versions.v1.resources", {"gpu": 1})
    raw = with_value(raw, "models.sentiment.versions.v1.image", "tensorflow/serving:2.15.0-gpu")
    assert _findings(raw, "dev") == []


# --- probes and ConfigMaps -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "code"),
    [
        ("http-rest", None),
        (8501, None),
        ("http-api", "MESH0012"),  # a valid name no port of the container has
        ("HTTP_REST", "MESH0010"),
        (70000, "MESH0010"),
    ],
)
def test_probe_ports_are_numbers_or_names_of_the_containers_ports(port, code):
    def edit(objects):
        _server(objects)["readinessProbe"]["httpGet"]["port"] = port

    findings = dev_after(edit)
    assert {f.code for f in findings} == ({code} if code else set()), findings


@pytest.mark.parametrize(("size", "refused"), [(1024 * 1024, False), (1024 * 1024 + 1, True)])
def test_config_map_data_may_total_1_mib(prod, size, refused):
    def edit(objects):
        (name,) = _configmaps(objects)[:1]
        _find(objects, "ConfigMap", name)["data"] = {"board.json": "x" * size}

    findings = _findings(prod, "prod", edit)
    assert bool(findings) is refused, findings


@pytest.mark.parametrize(
    ("key", "refused"), [("board.json", False), ("a/b.json", True), ("..x", True)]
)
def test_config_map_keys(prod, key, refused):
    def edit(objects):
        (name,) = _configmaps(objects)[:1]
        _find(objects, "ConfigMap", name)["data"] = {key: "{}"}

    assert bool(_findings(prod, "prod", edit)) is refused
