"""The supported matrix (docs/platform.md, "Supported platforms"): every boundary cell renders dev and prod
into objects that Kubernetes version's schemas accept, and what changes between cells is pinned.

Boundaries: Kubernetes 1.28 (SidecarContainers off) / 1.29 (on by default, KEP-753) / 1.33
(GA, where istiod's `auto` turns native on) / the newest; Istio 1.22 (the oldest) / 1.23 / 1.24
(the per-pod nativeSidecar annotation honoured, istio/istio#53490) / 1.28 (ENABLE_NATIVE_SIDECARS
`auto`) / 1.31 (the newest); each with and without Istio CNI.
"""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate import utils as kv_utils

from mesh.config import (
    ISTIO_VERSIONS,
    KUBERNETES_VERSIONS,
    ConfigError,
    Platform,
    StackConfig,
    parse_config,
)
from mesh.journeys import journeys, mesh_settings
from mesh.plan import build_plan
from mesh.trace import Objects
from mesh.trace.flagger import expand
from tests import conformance
from tests.conftest import PROJECT_DIR, one, plan_objects, stack_raw, with_value, without

OLDEST_K8S, NEWEST_K8S = KUBERNETES_VERSIONS[0], KUBERNETES_VERSIONS[-1]
OLDEST_ISTIO, NEWEST_ISTIO = ISTIO_VERSIONS[0], ISTIO_VERSIONS[-1]

# (Kubernetes, Istio, native sidecars by derivation, istiod's default for unannotated pods)
CELLS = [
    (OLDEST_K8S, OLDEST_ISTIO, False, False),
    (OLDEST_K8S, "1.24", False, False),  # Istio could, Kubernetes 1.28 cannot
    (OLDEST_K8S, NEWEST_ISTIO, False, False),
    ("1.29", "1.23", False, False),  # Kubernetes could, Istio 1.23 ignores the annotation
    ("1.29", "1.24", True, False),  # the first cell with native sidecars
    ("1.32", "1.27", True, False),  # `auto`, but kubelets below 1.33
    ("1.33", "1.26", True, False),  # kubelets 1.33, but no `auto` yet
    (
        "1.33",
        "1.27",
        True,
        True,
    ),  # `auto` (istio 1.27.0 pilot/pkg/features/pilot.go) turns native on for unannotated pods too
    (NEWEST_K8S, OLDEST_ISTIO, False, False),
    (NEWEST_K8S, NEWEST_ISTIO, True, True),
]
STACKS = ("dev", "prod")


def _cell_raw(stack: str, kubernetes: str, istio: str, cni: bool) -> dict[str, Any]:
    """The stack on that platform, istio.nativeSidecars left to the derivation."""
    raw = without(stack_raw(stack), "istio.nativeSidecars")
    platform = dict(raw.get("platform", {}))
    platform.update(kubernetesVersion=kubernetes, istioVersion=istio, istioCni=cni)
    return with_value(raw, "platform", platform)


def _cell_id(cell: tuple) -> str:
    return f"k8s{cell[0]}-istio{cell[1]}"


def _pods(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"] for o in objects if o["kind"] == "Deployment"
    }


@pytest.mark.parametrize("cni", [False, True], ids=["istio-init", "cni"])
@pytest.mark.parametrize("cell", CELLS, ids=_cell_id)
@pytest.mark.parametrize("stack", STACKS)
def test_each_cell_renders_objects_its_kubernetes_accepts_and_journeys_that_work(stack, cell, cni):
    kubernetes, istio, native, istiod_native = cell
    config = parse_config(_cell_raw(stack, kubernetes, istio, cni), stack)
    assert config.native_sidecars() is native
    assert config.platform.istiod_native_by_default() is istiod_native
    objects = build_plan(config).objects()
    found = [p for obj in objects for p in conformance.problems(obj, kubernetes)]
    assert found == []
    # What changes between cells: the annotation, the download's UID; nothing else of the pod.
    for name, pod in _pods(objects).items():
        annotations = pod["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/nativeSidecar"] == ("true" if native else "false")
        inits = pod["spec"].get("initContainers", [])
        if name.startswith("sentiment"):  # TF Serving: the copy into the emptyDir
            (fetch,) = inits
            assert fetch["name"] == "fetch-model"
            uid = fetch["securityContext"].get("runAsUser")
            assert uid == (None if native else 1337), name
        else:  # Triton reads S3 itself: no init container in any cell
            assert inits == []
    # Every journey the stack promises works on this mesh (CNI or not, native or not).
    traced = journeys(config)
    assert [j.name for j in traced if not j.passed] == []
    verdicts = {j.trace.outcome.verdict for j in traced if "fetch-model" in j.name}
    if native:  # through istio-proxy: the Sidecar's egress hosts decide (prod blackholes some)
        assert "egress" in verdicts and not verdicts & {"direct", "refused"}
    else:  # as UID 1337: never captured, with CNI or without
        assert verdicts == {"direct"}


@pytest.mark.parametrize("stack", STACKS)
def test_between_cells_only_the_sidecar_mode_changes_the_objects(stack):
    """Two cells with the same sidecar mode render the same objects; the two modes differ in
    the annotation and the download's runAsUser/runAsGroup only."""

    def rendered(kubernetes: str, istio: str, cni: bool) -> list[dict[str, Any]]:
        return build_plan(parse_config(_cell_raw(stack, kubernetes, istio, cni), stack)).objects()

    classic = rendered(OLDEST_K8S, OLDEST_ISTIO, False)
    assert rendered(NEWEST_K8S, OLDEST_ISTIO, True) == classic
    assert rendered("1.29", "1.23", False) == classic
    native = rendered("1.29", "1.24", False)
    assert rendered(NEWEST_K8S, NEWEST_ISTIO, True) == native

    def normalised(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = copy.deepcopy(objects)
        for pod in _pods(out).values():
            pod["metadata"]["annotations"].pop("sidecar.istio.io/nativeSidecar")
            for init in pod["spec"].get("initContainers", []):
                init["securityContext"].pop("runAsUser", None)
                init["securityContext"].pop("runAsGroup", None)
        return out

    assert classic != native
    assert normalised(classic) == normalised(native)


def test_every_supported_kubernetes_version_has_schemas_to_test_against():
    shipped = {kv_utils.major_minor(v) for v in kv_utils.all_versions()}
    assert set(KUBERNETES_VERSIONS) <= shipped
    assert kv_utils.major_minor(kubernetes_validate.utils.latest_version()) == NEWEST_K8S


# --- defaults: the widest range ----------------------------------------------------------------


def test_defaults_are_the_oldest_cell_and_work_on_every_supported_version():
    platform = Platform()
    assert (platform.kubernetes_version, platform.istio_version) == (OLDEST_K8S, OLDEST_ISTIO)
    assert platform.istio_cni is False
    assert platform.gpu_nodes == "device-plugin"
    assert platform.monitoring_release is None


def test_a_stack_without_platform_or_native_setting_gets_classic_sidecars():
    """The old default (`nativeSidecars: true`) broke every pod on Kubernetes 1.28."""
    raw = stack_raw("dev")
    raw = without(without(raw, "platform"), "istio")
    pod = _pods(plan_objects(raw))["sentiment-v1"]
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "false"
    (fetch,) = pod["spec"]["initContainers"]
    assert fetch["securityContext"]["runAsUser"] == 1337


def test_an_explicit_false_is_honoured_where_native_sidecars_would_work():
    raw = with_value(
        _cell_raw("dev", NEWEST_K8S, NEWEST_ISTIO, False), "istio.nativeSidecars", False
    )
    pod = _pods(plan_objects(raw))["sentiment-v1"]
    # "false" matters here: from Istio 1.27 istiod's `auto` would make an unannotated pod native
    assert pod["metadata"]["annotations"]["sidecar.istio.io/nativeSidecar"] == "false"
    assert pod["spec"]["initContainers"][0]["securityContext"]["runAsUser"] == 1337


# --- refusals ------------------------------------------------------------------------------


def _refusal(raw: dict[str, Any], stack: str = "dev") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, stack)
    return caught.value


@pytest.mark.parametrize(
    ("kubernetes", "istio", "reasons"),
    [
        (OLDEST_K8S, NEWEST_ISTIO, ["SidecarContainers gate off"]),
        (NEWEST_K8S, "1.23", ["ignores the per-pod annotation"]),
        (OLDEST_K8S, OLDEST_ISTIO, ["SidecarContainers gate off", "ignores the per-pod"]),
    ],
)
def test_native_sidecars_where_they_cannot_work_are_refused_naming_the_settings(
    kubernetes, istio, reasons
):
    raw = with_value(_cell_raw("dev", kubernetes, istio, False), "istio.nativeSidecars", True)
    error = _refusal(raw)
    assert error.path == "istio.nativeSidecars"
    for setting in ("platform.kubernetesVersion", "platform.istioVersion", "1.29+", "1.24+"):
        assert setting in error.problem
    assert f"{kubernetes!r}" in error.problem and f"{istio!r}" in error.problem
    assert "UID 1337" in error.problem  # what would work
    for reason in reasons:
        assert reason in error.problem
    assert ("SidecarContainers" in error.problem) is (kubernetes == OLDEST_K8S)


@pytest.mark.parametrize(
    ("key", "value", "phrase"),
    [
        ("kubernetesVersion", "1.27", "ml-mesh supports Kubernetes 1.28 to 1.37"),
        ("kubernetesVersion", "1.38", "ml-mesh supports Kubernetes 1.28 to 1.37"),
        ("kubernetesVersion", "v1.30", "not a supported Kubernetes version"),
        ("kubernetesVersion", 1.3, 'write the version as a quoted string, e.g. "1.30"'),
        ("istioVersion", "1.21", "ml-mesh supports Istio 1.22 to 1.31"),
        ("istioVersion", "1.32", "ml-mesh supports Istio 1.22 to 1.31"),
        ("istioVersion", "2.0", "not a supported Istio version"),
        ("istioVersion", 1.24, "is a number"),
        ("gpuNodes", "nvidia", "'device-plugin', 'gpu-operator' or 'custom'"),
        ("monitoringRelease", "a b", "label value"),
        ("ambient", True, "unknown setting (valid keys here: kubernetesVersion"),
    ],
)
def test_platform_values_outside_the_matrix_are_refused(dev, key, value, phrase):
    error = _refusal(with_value(dev, f"platform.{key}", value))
    assert error.path == f"platform.{key}"
    assert phrase in error.problem


def test_a_patch_version_is_read_as_its_minor(dev):
    raw = with_value(
        with_value(dev, "platform.istioVersion", "1.24.3"), "platform.kubernetesVersion", "1.29.10"
    )
    assert parse_config(raw, "dev").native_sidecars() is True


# --- GPU placement -------------------------------------------------------------------------


def _fraud_pod(raw: dict[str, Any]) -> dict[str, Any]:
    return one(plan_objects(raw, "prod"), "Deployment", "fraud-v7")["spec"]["template"]["spec"]


TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_gpu_placement_follows_how_the_gpu_nodes_are_labelled(prod):
    device_plugin = _fraud_pod(with_value(prod, "platform.gpuNodes", "device-plugin"))
    assert "nodeSelector" not in device_plugin  # the device plugin labels no node
    assert device_plugin["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    operator = _fraud_pod(with_value(prod, "platform.gpuNodes", "gpu-operator"))
    assert operator["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    custom = with_value(prod, "platform.gpuNodes", "custom")
    custom = with_value(custom, "scheduling.gpu.nodeSelector", {"node.example.com/gpu": "a100"})
    assert _fraud_pod(custom)["nodeSelector"] == {"node.example.com/gpu": "a100"}
    for pod in (device_plugin, operator, _fraud_pod(custom)):
        assert pod["tolerations"] == TOLERATION


@pytest.mark.parametrize("selector", [None, {}])
def test_custom_gpu_nodes_need_a_node_selector(prod, selector):
    raw = with_value(prod, "platform.gpuNodes", "custom")
    if selector is not None:
        raw = with_value(raw, "scheduling.gpu.nodeSelector", selector)
    error = _refusal(raw, "prod")
    assert error.path == "scheduling.gpu.nodeSelector"
    assert "platform.gpuNodes is custom" in error.problem
    assert "gpu-operator" in error.problem and "device-plugin" in error.problem


@pytest.mark.parametrize("gpu_nodes", ["device-plugin", "gpu-operator"])
def test_a_node_selector_is_refused_unless_gpu_nodes_are_custom(prod, gpu_nodes):
    raw = with_value(prod, "platform.gpuNodes", gpu_nodes)
    raw = with_value(raw, "scheduling.gpu.nodeSelector", {"node.example.com/gpu": "a100"})
    error = _refusal(raw, "prod")
    assert error.path == "scheduling.gpu.nodeSelector"
    assert f"platform.gpuNodes is {gpu_nodes!r}" in error.problem
    assert "set platform.gpuNodes to custom" in error.problem
    assert "GPU Operator" not in error.problem


def test_the_old_default_selector_is_refused_pointing_at_gpu_operator(prod):
    """Stack files written before the platform block may spell out the old default."""
    raw = with_value(prod, "scheduling.gpu.nodeSelector", {"nvidia.com/gpu.present": "true"})
    error = _refusal(raw, "prod")
    assert "platform.gpuNodes: gpu-operator" in error.problem


# --- the monitoring release ------------------------------------------------------------------


def _rule_labels(raw: dict[str, Any]) -> dict[str, str]:
    return one(plan_objects(raw, "prod"), "PrometheusRule", "ml-mesh-alerts")["metadata"]["labels"]


def test_prods_rule_carries_the_release_label_of_its_monitoring_release(prod):
    assert prod["platform"]["monitoringRelease"] == "kube-prometheus-stack"
    assert "labels" not in prod["telemetry"]["alerts"]
    assert _rule_labels(prod)["release"] == "kube-prometheus-stack"
    other = with_value(prod, "platform.monitoringRelease", "monitoring")
    assert _rule_labels(other)["release"] == "monitoring"
    assert "release" not in _rule_labels(without(prod, "platform.monitoringRelease"))


def test_an_agreeing_release_label_is_accepted_and_a_contradicting_one_refused(prod):
    same = with_value(prod, "telemetry.alerts.labels", {"release": "kube-prometheus-stack"})
    assert _rule_labels(same)["release"] == "kube-prometheus-stack"
    error = _refusal(with_value(prod, "telemetry.alerts.labels", {"release": "monitoring"}), "prod")
    assert error.path == "telemetry.alerts.labels.release"
    assert "'monitoring' contradicts platform.monitoringRelease 'kube-prometheus-stack'" in (
        error.problem
    )


def test_prods_comment_names_the_release_its_rules_carry():
    """The comment used to say the release was "monitoring" (the namespace) while the rules
    were labelled for `kube-prometheus-stack`."""
    text = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()
    assert 'release "monitoring"' not in text
    assert "kube-prometheus-stack" in " ".join(text.replace("#", " ").split())


# --- the trace follows the platform ------------------------------------------------------------


def _fetch_verdicts(config: StackConfig, objects: Objects) -> set[str]:
    return {
        j.trace.outcome.verdict
        for j in journeys(config, objects=objects)
        if j.name.startswith("sentiment-v3 fetch-model")
    }


@pytest.mark.parametrize(("cni", "verdict"), [(True, "refused"), (False, "direct")])
def test_a_classic_init_container_not_running_as_1337_fails_with_cni_and_bypasses_without(
    cni, verdict
):
    """Why the classic download runs as UID 1337: without it, Istio CNI redirects its traffic
    into a proxy that is not there yet (refused); istio-init, ordered last, does not capture it
    at all (direct: past the lock-down)."""
    config = parse_config(_cell_raw("prod", OLDEST_K8S, OLDEST_ISTIO, cni), "prod")
    objects = build_plan(config).objects()
    assert _fetch_verdicts(config, Objects(expand(objects), mesh_settings(config))) == {"direct"}
    for pod in _pods(objects).values():
        for init in pod["spec"].get("initContainers", []):
            del init["securityContext"]["runAsUser"], init["securityContext"]["runAsGroup"]
    assert _fetch_verdicts(config, Objects(expand(objects), mesh_settings(config))) == {verdict}


def test_alerts_without_a_release_label_are_warned_naming_the_setting(prod):
    """kube-prometheus-stack loads only rules labelled with its release: without the label the
    API server accepts the rule and Prometheus never evaluates it."""
    from mesh.checks import check

    raw = without(prod, "platform.monitoringRelease")
    config = parse_config(raw, "prod")
    (finding,) = [f for f in check(config, build_plan(config).objects()) if f.code == "MESH0004"]
    assert (finding.severity, finding.path) == ("warning", "platform.monitoringRelease")
    with_release = parse_config(prod, "prod")
    assert not [
        f for f in check(with_release, build_plan(with_release).objects()) if f.code == "MESH0004"
    ]
