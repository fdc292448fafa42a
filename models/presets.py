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
    container: Callable[[str, Model, str, Storage], dict]
    # Seconds the kubelet waits for a liveness answer (see the sglang preset).
    liveness_timeout: int = 5
    # A memory-backed /dev/shm for the processes of one server (vllm, sglang).
    shared_memory: bool = False
    # The server answers Prometheus on /metrics of its serving port (vllm, sglang).
    serves_metrics: bool = False


def downloads_model(model: Model) -> bool:
    """True: an init container copies the version from S3 into an emptyDir the server reads.
    False: the server reads s3:// itself (Triton; vLLM and SGLang with `llm.weights:
    stream`), so it needs the sidecar up at start."""
    return not model.streams_weights()


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


# --- LLM servers (vLLM 0.34.0, SGLang 0.5.23) ---------------------------------------------
#
# Both serve an OpenAI-compatible API over HTTP/1.1 on one port, from one process tree per pod
# that spans every GPU of the pod (one tensor-parallel rank per GPU), and both stream the
# weights from s3:// with the Run:ai model streamer (`--load-format runai_streamer`: vllm
# model_executor/model_loader/runai_streamer_loader.py; sglang srt/utils/runai_utils.py), which
# needs the image built with the `runai` extra (runai-model-streamer[s3]).
VLLM_PORT = 8000  # vllm entrypoints/common/cli_args.py `port: int = 8000`
SGLANG_PORT = 30000  # sglang srt/arg_groups/fields/serving.py `port ... = 30000`
# SGLang's /health gives up after SGLANG_HEALTH_CHECK_TIMEOUT (20s, srt/entrypoints/
# http_server.py `HEALTH_CHECK_TIMEOUT`) and answers 503 itself; the kubelet waits longer, so
# the server's verdict counts, not a busy scheduler's slow answer.
SGLANG_LIVENESS_TIMEOUT = 25
SHM_VOLUME = "dshm"
SHM_MOUNT = "/dev/shm"
SHM_PER_GPU_GI = 2
LLM_RUN_AS_USER = 1000  # the images run as root; any non-root UID but 1337 (istio-proxy) works
LLM_REQUESTS = {"cpu": "4", "memory": "32Gi"}
LLM_LIMITS = {"cpu": "16", "memory": "64Gi"}


def served_model_name(name: str, model: Model) -> str:
    """What clients send as `model` and /v1/models lists: llm.servedModelName, else the
    model's name in the stack."""
    return model.llm_settings().served_model_name or name


def model_location(name: str, model: Model, version: str, storage: Storage) -> str:
    """Where the LLM server reads the version: `s3://<bucket>/<modelPath>/` when it streams
    (the trailing `/` keeps a prefix listing inside the version: without it `llm/7b` would
    also list `llm/7b-chat/...`), else the init container's copy."""
    if model.streams_weights():
        return f"s3://{storage.bucket}/{model.versions[version].model_path}/"
    return model_dir(name, model)


def shm_size(model: Model, version: str) -> str:
    """sizeLimit of /dev/shm: llm.shmSize, else 2Gi per tensor-parallel rank.

    A container's /dev/shm is 64Mi by default (the runtime's tmpfs), and the tensor-parallel
    workers exchange data through it: PyTorch shares tensors between processes in shared
    memory, vLLM's multiprocessing executor broadcasts each step to its workers through a
    shared-memory ring buffer (vllm distributed/device_communicators/shm_broadcast.py), and
    NCCL falls back to its SHM transport between GPUs without P2P. vLLM's Docker guide asks for
    `--ipc=host` or `--shm-size` for exactly this. A memory-backed emptyDir counts towards the
    container's memory limit, which the preset sizes above it."""
    explicit = model.llm_settings().shm_size
    return (
        explicit
        if explicit is not None
        else f"{SHM_PER_GPU_GI * model.tensor_parallel_size(version)}Gi"
    )


def _llm_store_env(model: Model, storage: Storage) -> list[dict]:
    """The store settings of the Run:ai streamer: region and credentials as for every reader
    (the streamer's S3 client is the AWS SDK, which also takes IRSA's web identity token),
    and for an S3-compatible endpoint its URL (RUNAI_STREAMER_S3_ENDPOINT, and
    AWS_ENDPOINT_URL for the metadata copy) with path-style addressing, which MinIO-like
    stores need (RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING=0, the streamer's documented switch).
    vLLM copies AWS_ENDPOINT_URL to RUNAI_STREAMER_S3_ENDPOINT only when
    --model-loader-extra-config is given (runai_streamer_loader.py `__init__`), so both are set.
    """
    env = [*region_env(storage), *credential_env(storage)]
    if model.streams_weights() and storage.endpoint is not None:
        url = storage.endpoint.url()
        env += [
            {"name": "AWS_ENDPOINT_URL", "value": url},
            {"name": "RUNAI_STREAMER_S3_ENDPOINT", "value": url},
            {"name": "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING", "value": "0"},
        ]
    return env


def _llm_env(model: Model, storage: Storage, own: list[dict]) -> list[dict]:
    """Store settings, the preset's own variables, then the model's llm.env and secretEnv.

    HOME=/tmp: the root filesystem is read-only and both servers cache under ~/.cache (the
    streamed model's config and tokenizer, torch.compile and kernel caches). HF_HUB_OFFLINE=1:
    the model comes from the bucket, and with egress locked down a lookup on the Hub would
    only hang; a model's llm.env may set it otherwise."""
    llm = model.llm_settings()
    env = [*_llm_store_env(model, storage), {"name": "HOME", "value": "/tmp"}, *own]
    if "HF_HUB_OFFLINE" not in llm.env:
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    env += [{"name": k, "value": v} for k, v in sorted(llm.env.items())]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.secret_name, "key": ref.key}}}
        for k, ref in sorted(llm.secret_env.items())
    ]
    return env


def _vllm_container(name: str, model: Model, version: str, storage: Storage) -> dict:
    """`vllm serve <model>` (vllm entrypoints/cli/serve.py): the model positional, the flags
    of vllm engine/arg_utils.py `EngineArgs.add_cli_args` and entrypoints/common/cli_args.py.
    No --host: unset, vLLM binds every address (entrypoints/launchers/launcher.py
    `setup_server`)."""
    llm = model.llm_settings()
    args = [
        model_location(name, model, version, storage),
        f"--port={VLLM_PORT}",
        f"--served-model-name={served_model_name(name, model)}",
        f"--tensor-parallel-size={model.tensor_parallel_size(version)}",
    ]
    if model.streams_weights():
        args.append("--load-format=runai_streamer")
    if llm.max_model_len is not None:
        args.append(f"--max-model-len={llm.max_model_len}")
    args += llm.extra_args
    # Usage statistics go to stats.vllm.ai (vllm usage/usage_lib.py), which egress blocks.
    own = [{"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
    return {"command": ["vllm", "serve"], "args": args, "env": _llm_env(model, storage, own)}


def _sglang_container(name: str, model: Model, version: str, storage: Storage) -> dict:
    """`python3 -m sglang.launch_server` with the flags of sglang srt/arg_groups/fields
    (model.py, parallel.py, serving.py, observability.py). --host 0.0.0.0: SGLang binds
    127.0.0.1 by default, and the sidecar forwards inbound requests to the pod IP.
    --enable-metrics: Prometheus text on /metrics of the serving port (off by default)."""
    llm = model.llm_settings()
    args = [
        f"--model-path={model_location(name, model, version, storage)}",
        "--host=0.0.0.0",
        f"--port={SGLANG_PORT}",
        f"--served-model-name={served_model_name(name, model)}",
        f"--tp-size={model.tensor_parallel_size(version)}",
    ]
    if model.streams_weights():
        args.append("--load-format=runai_streamer")
    if llm.max_model_len is not None:
        args.append(f"--context-length={llm.max_model_len}")
    args.append("--enable-metrics")
    args += llm.extra_args
    return {
        "command": ["python3", "-m", "sglang.launch_server"],
        "args": args,
        "env": _llm_env(model, storage, []),
    }


def vllm_api_key(model: Model) -> bool:
    """vLLM guards every /v1 path with its API key (vllm entrypoints/serve/middleware/
    authenticate.py `GUARDED_PREFIX`), /health not: with a key the probes use /health."""
    llm = model.llm_settings()
    return (
        "VLLM_API_KEY" in llm.env
        or "VLLM_API_KEY" in llm.secret_env
        or any(arg.split("=", 1)[0] == "--api-key" for arg in llm.extra_args)
    )


def _vllm_readiness(_: str, model: Model) -> str:
    """/v1/models answers once the API server runs, which in vLLM 0.34 is after the engine
    loaded the weights, profiled memory and captured CUDA graphs: `run_server_worker` builds
    the engine client before it serves (entrypoints/launchers/api_server/entry.py), and the
    socket bound before is not listening, so earlier probes are refused. /health only says the
    engine process is alive (instrumentator/health.py: `check_health`, 503 once it died)."""
    return "/health" if vllm_api_key(model) else "/v1/models"


PRESETS: dict[str, Preset] = {
    "tensorflow-serving": Preset(
        service_ports=(ServerPort("http-rest", 8501, "http"), ServerPort("grpc", 8500, "grpc")),
        metrics_port=None,
        readiness_path=lambda name, _: f"/v1/models/{name}",
        liveness_path=lambda name, _: f"/v1/models/{name}",
        run_as_user=lambda _: 65532,
        requests={"cpu": "500m", "memory": "1Gi"},
        limits={"cpu": "2", "memory": "2Gi"},
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
        container=_custom_container,
    ),
    "vllm": Preset(
        service_ports=(ServerPort("http", VLLM_PORT, "http"),),
        metrics_port=None,  # /metrics is on the serving port
        readiness_path=_vllm_readiness,
        liveness_path=lambda *_: "/health",
        run_as_user=lambda _: LLM_RUN_AS_USER,
        requests=LLM_REQUESTS,
        limits=LLM_LIMITS,
        container=_vllm_container,
        shared_memory=True,
        serves_metrics=True,
    ),
    "sglang": Preset(
        service_ports=(ServerPort("http", SGLANG_PORT, "http"),),
        metrics_port=None,  # /metrics is on the serving port (--enable-metrics)
        # /health (= /health_generate): 503 while the server is Starting, then 200 once a
        # one-token generation got an answer from the scheduler, so the model is loaded and
        # serving (python/sglang/srt/entrypoints/http_server.py `health_generate`; only an
        # idle server runs the generation, a busy one answers at once). SGLang 0.5.23 also
        # has `/ready` (no GPU work), but older releases, which an image tag may still name,
        # lack it, and a probe on a missing path keeps every pod unready: /health is in every
        # release.
        readiness_path=lambda *_: "/health",
        liveness_path=lambda *_: "/health",
        run_as_user=lambda _: LLM_RUN_AS_USER,
        requests=LLM_REQUESTS,
        limits=LLM_LIMITS,
        container=_sglang_container,
        liveness_timeout=SGLANG_LIVENESS_TIMEOUT,
        shared_memory=True,
        serves_metrics=True,
    ),
}


def preset(model: Model) -> Preset:
    return PRESETS[model.server]


def scrape_port(model: Model) -> ServerPort | None:
    """The port Prometheus reads the server's own metrics on: its metrics port (Triton 8002),
    the serving port for servers that serve /metrics there (vLLM, SGLang), else None."""
    spec = preset(model)
    return spec.metrics_port or (spec.service_ports[0] if spec.serves_metrics else None)


def scrape_annotations(model: Model) -> dict[str, str]:
    """`prometheus.io/*` naming the server's own metrics endpoint, for servers that have one.

    With Istio's metrics merging (`meshConfig.enablePrometheusMerge`, on by default) the sidecar
    injector moves these into the proxy's environment and points the annotations at the agent
    (:15020/stats/prometheus), which then serves the server's metrics together with Istio's:
    one scrape per pod, plain HTTP, whatever the mTLS mode. A pod opts out with
    `prometheus.istio.io/merge-metrics: "false"`.

    vLLM and SGLang answer on /metrics of their serving port (vllm entrypoints/serve/
    instrumentator/metrics.py `attach_router`; sglang srt/utils/common.py `add_prometheus_middleware`, with
    `--enable-metrics`): the annotations name that port. The agent fetches it from inside
    the pod (`http://localhost:<port>/metrics`, pilot-agent status/server.go `handleStats`),
    so the AuthorizationPolicy that closes /metrics to callers does not apply. In ambient mode
    no injector rewrites the annotations and Prometheus scrapes that port itself.
    """
    port = scrape_port(model)
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
