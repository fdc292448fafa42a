"""Model server presets: how each server is started, probed and sized.

A preset is data plus one function that writes the server container's command line. Everything
else about a pod (security context, volumes, the model download) is shared and lives in
`models.workloads`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mesh.config import CustomServer, Model, Storage
from mesh.storage import credential_env, region_env, triton_repository

MODEL_VOLUME = "model"
MODEL_MOUNT = "/models"
METRICS_PATH = "/metrics"  # where metrics_port serves Prometheus text (Triton: 8002/metrics)


@dataclass(frozen=True)
class ServerPort:
    """A port of the server. `name` carries Istio's protocol prefix; `app_protocol` says it again
    in the field Kubernetes and Istio both read, so protocol selection never falls back to
    sniffing."""

    name: str
    number: int
    app_protocol: str


@dataclass(frozen=True)
class Preset:
    service_ports: tuple[ServerPort, ...]  # first one is the REST port the gateway routes to
    metrics_port: ServerPort | None  # container-only: scraped in the pod, never routed
    readiness_path: Callable[[str, Model], str]
    liveness_path: Callable[[str, Model], str]
    run_as_user: Callable[[Model], int]
    requests: dict[str, str]
    limits: dict[str, str]
    # True: an init container copies the version from S3 into an emptyDir the server reads.
    # False: the server reads s3:// itself (Triton), so it needs the sidecar up at start.
    downloads_model: bool
    container: Callable[[str, Model, str, Storage], dict]


def _tf_container(name: str, model: Model, version: str, storage: Storage) -> dict:
    # TF Serving 2.7+ dropped its S3 filesystem (tensorflow/serving#1963): it serves the copy
    # the init container left in /models/<name>/1 (one model version per Deployment).
    return {
        "command": ["tensorflow_model_server"],
        "args": [
            "--port=8500",
            "--rest_api_port=8501",
            f"--model_name={name}",
            f"--model_base_path={MODEL_MOUNT}/{name}",
        ],
    }


def _triton_container(name: str, model: Model, version: str, storage: Storage) -> dict:
    path = model.versions[version].model_path
    return {
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={triton_repository(storage, path)}",
            "--http-port=8000",
            "--grpc-port=8001",
            "--metrics-port=8002",
        ],
        "env": [*region_env(storage), *credential_env(storage)],
    }


def _custom_container(name: str, model: Model, version: str, storage: Storage) -> dict:
    custom = _custom(model)
    env = [{"name": "MODEL_DIR", "value": custom.model_dir}]
    env += [{"name": k, "value": v} for k, v in sorted(custom.env.items())]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.secret_name, "key": ref.key}}}
        for k, ref in sorted(custom.secret_env.items())
    ]
    container: dict = {"env": env}
    if custom.args:
        container["args"] = list(custom.args)
    return container


def _custom(model: Model) -> CustomServer:
    assert model.custom is not None, "config validation guarantees a custom block"
    return model.custom


PRESETS: dict[str, Preset] = {
    "tensorflow-serving": Preset(
        service_ports=(ServerPort("http-rest", 8501, "http"), ServerPort("grpc", 8500, "grpc")),
        metrics_port=None,
        readiness_path=lambda name, _: f"/v1/models/{name}",
        liveness_path=lambda name, _: f"/v1/models/{name}",
        run_as_user=lambda _: 65532,
        requests={"cpu": "500m", "memory": "1Gi"},
        limits={"cpu": "2", "memory": "2Gi"},
        downloads_model=True,
        container=_tf_container,
    ),
    "triton": Preset(
        service_ports=(ServerPort("http", 8000, "http"), ServerPort("grpc", 8001, "grpc")),
        metrics_port=ServerPort("http-metrics", 8002, "http"),
        readiness_path=lambda *_: "/v2/health/ready",
        liveness_path=lambda *_: "/v2/health/live",
        run_as_user=lambda _: 1000,  # triton-server user of the NGC image
        requests={"cpu": "1", "memory": "2Gi"},
        limits={"cpu": "4", "memory": "8Gi"},
        downloads_model=False,
        container=_triton_container,
    ),
    "custom": Preset(
        service_ports=(),  # from the model's custom block, see server_ports()
        metrics_port=None,
        readiness_path=lambda _, model: _custom(model).readiness_path,
        liveness_path=lambda _, model: _custom(model).readiness_path,
        run_as_user=lambda model: _custom(model).run_as_user,
        requests={"cpu": "250m", "memory": "512Mi"},
        limits={"cpu": "1", "memory": "1Gi"},
        downloads_model=True,
        container=_custom_container,
    ),
}


def preset(model: Model) -> Preset:
    return PRESETS[model.server]


def scrape_annotations(model: Model) -> dict[str, str]:
    """`prometheus.io/*` naming the server's own metrics endpoint, for servers that have one.

    With Istio's metrics merging (`meshConfig.enablePrometheusMerge`, on by default) the sidecar
    injector moves these into the proxy's environment and points the annotations at the agent
    (:15020/stats/prometheus), which then serves the server's metrics together with Istio's:
    one scrape per pod, plain HTTP, whatever the mTLS mode. A pod opts out with
    `prometheus.istio.io/merge-metrics: "false"`.
    """
    port = preset(model).metrics_port
    if port is None:
        return {}
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port.number),
        "prometheus.io/path": METRICS_PATH,
    }


def server_ports(model: Model) -> tuple[ServerPort, ...]:
    """Ports the Service exposes and the VirtualService routes; the first is the REST port."""
    if model.server != "custom":
        return preset(model).service_ports
    custom = _custom(model)
    ports = (ServerPort("http", custom.http_port, "http"),)
    if custom.grpc_port is not None:
        ports += (ServerPort("grpc", custom.grpc_port, "grpc"),)
    return ports


def model_dir(name: str, model: Model) -> str:
    """Where the init container puts the model version for the server to read."""
    if model.server == "custom":
        return _custom(model).model_dir
    return f"{MODEL_MOUNT}/{name}/1"
