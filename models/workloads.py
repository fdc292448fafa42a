"""Kubernetes objects of one model: its ServiceAccount, Service and one Deployment per version.

Pure functions from validated config to plain objects (camelCase, as the API expects). Istio
routing for the same model is in `mesh.traffic`.
"""

from __future__ import annotations

import json

from mesh.ambient import service_labels
from mesh.config import Model, StackConfig
from mesh.config.startup import STARTUP_PROBE_PERIOD_SECONDS
from mesh.k8s import metadata
from mesh.storage import credential_env, endpoint_args, region_env
from models.presets import (
    MODEL_MOUNT,
    MODEL_VOLUME,
    SHM_MOUNT,
    SHM_VOLUME,
    downloads_model,
    model_dir,
    preset,
    scrape_annotations,
    server_ports,
    shm_size,
)
from models.scaling import gpu_placement, owns_replicas, scaling_objects, topology_spread

COMPONENT = "model-server"
SERVER_CONTAINER = "server"
FETCH_CONTAINER = "fetch-model"
TMP_VOLUME = "tmp"
ISTIO_PROXY_UID = 1337  # traffic from this UID bypasses the sidecar's iptables capture
GPU = "nvidia.com/gpu"


def selector_labels(name: str, version: str) -> dict[str, str]:
    """The pod labels a Deployment selects on and a DestinationRule subset matches.

    Derived only from names that are config keys, so no later edit can change them (a changed
    Deployment selector forces a replacement, that is downtime).
    """
    return {"app": name, "version": version}


def service_account(config: StackConfig, name: str) -> dict:
    model = config.models[name]
    annotations = {"eks.amazonaws.com/role-arn": model.role_arn} if model.role_arn else None
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(name, config.namespace, COMPONENT, {"app": name}, annotations),
        "automountServiceAccountToken": False,
    }


def service(config: StackConfig, name: str) -> dict:
    model = config.models[name]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(
            name, config.namespace, COMPONENT, {"app": name, **service_labels(config)}
        ),
        "spec": {
            "type": "ClusterIP",
            # `app` only: one Service spans every version; versions are told apart by the
            # DestinationRule subsets.
            "selector": {"app": name},
            "ports": [
                {
                    "name": port.name,
                    "port": port.number,
                    "targetPort": port.name,
                    "protocol": "TCP",
                    "appProtocol": port.app_protocol,
                }
                for port in server_ports(model)
            ],
        },
    }


def resources(config: StackConfig, name: str, version: str) -> dict:
    """The preset's requests and limits, overridden by the model, then by the version."""
    model = config.models[name]
    spec = preset(model)
    requests, limits, gpu = dict(spec.requests), dict(spec.limits), 0
    for override in (model.resources, model.versions[version].resources):
        if override is None:
            continue
        requests.update(_set(override.requests.model_dump()))
        limits.update(_set(override.limits.model_dump()))
        gpu = override.gpu or gpu
    if gpu:
        requests[GPU] = limits[GPU] = str(gpu)
    return {"requests": requests, "limits": limits}


def _set(values: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v is not None}


def _hardened(run_as_user: int | None = None) -> dict:
    context: dict = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    if run_as_user is not None:
        context["runAsUser"] = run_as_user
        context["runAsGroup"] = run_as_user
    return context


def _probe(path: str, port: str, period: int, failures: int, timeout: int = 5) -> dict:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _fetch_container(config: StackConfig, name: str, version: str) -> dict:
    """Copies the model version from S3 before the server starts.

    With native sidecars istio-proxy is already running, so the copy goes through the mesh and
    the model-store ServiceEntry. Classic sidecars start only with the app containers, after
    every init container, and what happens to the copy's traffic depends on who sets up the
    pod's iptables (platform.istioCni):

    - Istio CNI: the rules exist before any container runs, so the copy's connections are
      redirected to 15001, where no proxy listens yet: refused, the download loops
      (istio/istio#11130);
    - istio-init: the injector moves istio-init to the end of the init containers
      (pkg/kube/inject/webhook.go `reorderPod`), so the copy runs before capture exists: it
      works, but bypasses Envoy and the REGISTRY_ONLY lock-down.

    Either way the copy runs as the proxy's UID 1337, which the capture rules return early
    (`--uid-owner 1337 -j RETURN`, tools/istio-iptables): Istio's documented workaround for
    application init containers, the one that works with and without CNI, and whichever mode
    istiod picks where the per-pod annotation is not honoured (Istio 1.22/1.23).

    In ambient there is no proxy in the pod and the copy runs as the pod's user: Istio CNI's
    in-pod redirection exists before any container starts, since the CNI plugin hands the new
    pod to the node agent while the runtime sets up its sandbox and fails the sandbox when it
    cannot (cni/pkg/plugin/plugin.go `doAddRun`; Istio's docs "Ztunnel traffic redirection"),
    and ztunnel's listeners are up from then on. So the init container's connections already
    go through ztunnel (and the waypoint, for the store's ServiceEntries: mesh.egress), and
    UID 1337 would be wrong: ztunnel marks its own traffic, no UID is exempt.
    """
    model = config.models[name]
    path = model.versions[version].model_path
    uid = None if config.native_sidecars() or config.ambient() else ISTIO_PROXY_UID
    return {
        "name": FETCH_CONTAINER,
        "image": config.images.model_fetcher,
        "imagePullPolicy": "IfNotPresent",
        "command": ["aws", "s3", "sync"],
        "args": [
            f"s3://{config.storage.bucket}/{path}",
            model_dir(name, model),
            "--no-progress",
            "--only-show-errors",
            *endpoint_args(config.storage),
        ],
        "env": [
            *region_env(config.storage),
            {"name": "HOME", "value": "/tmp"},
            *credential_env(config.storage),
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": _hardened(uid),
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": _model_mount(name, model)},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
    }


def _model_mount(name: str, model: Model) -> str:
    return model.custom.model_dir if model.custom else MODEL_MOUNT


def _server_container(config: StackConfig, name: str, version: str) -> dict:
    model = config.models[name]
    spec = preset(model)
    ports = server_ports(model)
    rest = ports[0].name
    container = {
        "name": SERVER_CONTAINER,
        "image": model.versions[version].image,
        "imagePullPolicy": "IfNotPresent",
        **spec.container(name, model, version, config.storage),
        "ports": [
            {"name": p.name, "containerPort": p.number, "protocol": "TCP"}
            for p in ports + ((spec.metrics_port,) if spec.metrics_port else ())
        ],
        # Large models load slowly: the startup probe allows the model's serverStart (10
        # minutes by default), after which readiness and liveness take over with tight
        # thresholds.
        "startupProbe": _probe(
            spec.readiness_path(name, model),
            rest,
            STARTUP_PROBE_PERIOD_SECONDS,
            model.startup_budget().startup_failure_threshold,
        ),
        "readinessProbe": _probe(spec.readiness_path(name, model), rest, 5, 3),
        "livenessProbe": _probe(
            spec.liveness_path(name, model), rest, 10, 3, spec.liveness_timeout
        ),
        "resources": resources(config, name, version),
        "securityContext": _hardened(),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
    }
    if downloads_model(model):
        container["volumeMounts"].insert(
            0, {"name": MODEL_VOLUME, "mountPath": _model_mount(name, model), "readOnly": True}
        )
    if spec.shared_memory:
        container["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": SHM_MOUNT})
    return container


def pod_annotations(config: StackConfig) -> dict[str, str]:
    """The pod template's annotations.

    `sidecar.istio.io/nativeSidecar` is honoured from Istio 1.24 (istio/istio#53490); 1.22 and
    1.23 ignore it and follow istiod's ENABLE_NATIVE_SIDECARS. It is emitted on every platform
    all the same, and nothing relies on it there: "false" is inert before 1.24, and keeps the
    pods classic, as rendered, once the mesh is upgraded past 1.24 (from 1.28 istiod's `auto`
    would otherwise make them native on 1.33+ kubelets) until platform.istioVersion follows;
    the classic download's UID 1337 works in either mode (see `_fetch_container`).

    Ambient pods have no sidecar, so none of the sidecar annotations: only the default
    container. ztunnel never touches HTTP probes; the kubelet's reach the server directly
    (Istio CNI SNATs them to mesh.ambient.PROBE_SNAT_ADDRESS, which ztunnel lets through).
    """
    if config.ambient():
        return {"kubectl.kubernetes.io/default-container": SERVER_CONTAINER}
    return {
        "kubectl.kubernetes.io/default-container": SERVER_CONTAINER,
        "sidecar.istio.io/nativeSidecar": "true" if config.native_sidecars() else "false",
        # Native sidecars already start before the app; without them this holds the server
        # until istio-proxy is ready, so Triton can reach S3 at start-up.
        "proxy.istio.io/config": json.dumps({"holdApplicationUntilProxyStarts": True}),
        # HTTP probes go to the pilot-agent (port 15020, not captured), which calls the server
        # from inside the pod: they keep working under STRICT mTLS and ALLOW-only policies.
        "sidecar.istio.io/rewriteAppHTTPProbers": "true",
    }


def deployment(config: StackConfig, name: str, version: str) -> dict:
    """One Deployment per version, `<model>-<version>`, selected by app and version."""
    labels = selector_labels(name, version)
    return _deployment(config, name, version, f"{name}-{version}", labels)


def target_deployment(config: StackConfig, name: str) -> dict:
    """Progressive mode: the one Deployment Flagger watches, named after the model.

    Flagger copies it to `<model>-primary` and rewrites the label it selects on (`app`) to
    `<model>-primary`, so the selector must be that label alone; the pods still carry the
    version label, for Istio telemetry and for people.
    """
    version = config.models[name].target_version()
    return _deployment(config, name, version, name, {"app": name})


def _deployment(
    config: StackConfig, name: str, version: str, object_name: str, selector: dict[str, str]
) -> dict:
    model = config.models[name]
    spec = preset(model)
    uid = spec.run_as_user(model)
    labels = selector_labels(name, version)
    volumes: list[dict] = [{"name": TMP_VOLUME, "emptyDir": {"sizeLimit": "1Gi"}}]
    if downloads_model(model):
        volumes.insert(0, {"name": MODEL_VOLUME, "emptyDir": {"sizeLimit": model.disk_size}})
    else:
        volumes[0]["emptyDir"]["sizeLimit"] = model.disk_size  # the server caches S3 in /tmp
    if spec.shared_memory:
        volumes.append(
            {
                "name": SHM_VOLUME,
                "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(model, version)},
            }
        )
    pod_spec: dict = {
        "serviceAccountName": name,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_server_container(config, name, version)],
        "volumes": volumes,
        "terminationGracePeriodSeconds": 60,
        "topologySpreadConstraints": topology_spread(name, version),
        **gpu_placement(config, resources(config, name, version)),
    }
    if downloads_model(model):
        pod_spec["initContainers"] = [_fetch_container(config, name, version)]
    # With an HPA, no replicas here: the HPA owns the field and `pulumi up` must not reset it.
    replicas = (
        {}
        if owns_replicas(config, name, version)
        else {"replicas": model.versions[version].replicas}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(object_name, config.namespace, COMPONENT, labels),
        "spec": {
            **replicas,
            "revisionHistoryLimit": 5,
            # The start-up budget, not Kubernetes' 600s: a slow pod must not fail the rollout
            # while it is still within what its probes allow (mesh.config.startup).
            "progressDeadlineSeconds": model.startup_budget().deadline,
            "selector": {"matchLabels": dict(selector)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": rolling_update(model)},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": {**pod_annotations(config), **scrape_annotations(model)},
                },
                "spec": pod_spec,
            },
        },
    }


def rolling_update(model: Model) -> dict[str, int]:
    """`surge` (default): a new pod starts before an old one stops, so a version never runs
    below its replicas, at the cost of one pod more during the rollout, and for a GPU version
    one spare GPU (mesh.checks.rollouts warns). `replace`: an old pod stops first, so the
    rollout needs no spare capacity and runs one pod short until the new one is ready; with
    one replica that is downtime (warned, refused in protected stacks). The PodDisruptionBudget
    (maxUnavailable 1) does not limit a rollout (the Deployment controller deletes pods, it
    does not evict them) but counts the pod being replaced, so a drain meanwhile evicts no
    further ready pod of the version."""
    if model.rollout == "replace":
        return {"maxSurge": 0, "maxUnavailable": 1}
    return {"maxSurge": 1, "maxUnavailable": 0}


def deployment_timeouts(config: StackConfig, name: str, version: str) -> tuple[int, int]:
    """Seconds Pulumi may await a Deployment of this version on create and on update.

    Pulumi waits for the whole rollout (default 10 minutes) and `pulumi up` fails, without
    applying what depends on the Deployment (the VirtualService's weight shift, the Canary),
    when that runs out. On create every pod starts at once: one start-up deadline. On update
    pods are replaced one at a time (maxSurge 1 or maxUnavailable 1), each within one
    deadline: one deadline per pod, the HPA's maximum when it may have scaled out. A minute
    more than the Kubernetes deadline in both, so a stuck rollout ends with the Deployment's
    own ProgressDeadlineExceeded, which Pulumi reports, not with Pulumi's timeout. mesh.program
    passes these as ResourceOptions.custom_timeouts: a Pulumi option, not an object field."""
    model = config.models[name]
    deadline = model.startup_budget().deadline
    pods = max(model.pods_per_rollout(version), 1)
    return deadline + TIMEOUT_MARGIN_SECONDS, pods * deadline + TIMEOUT_MARGIN_SECONDS


TIMEOUT_MARGIN_SECONDS = 60


def model_objects(config: StackConfig, name: str) -> list[dict]:
    model = config.models[name]
    return [
        service_account(config, name),
        service(config, name),
        *(
            obj
            for version in sorted(model.versions)
            for obj in (deployment(config, name, version), *scaling_objects(config, name, version))
        ),
    ]
