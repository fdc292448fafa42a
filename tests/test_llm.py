"""The vllm and sglang presets: what the pod runs, how it is probed, what the config refuses,
which paths the policy opens, all from examples/Pulumi.llm.yaml with one setting changed per
row (vLLM 0.34.0 and SGLang 0.5.23, see models/presets.py)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mesh.config import parse_config
from mesh.journeys import gateway_workload, stack_objects
from mesh.plan import build_plan
from mesh.stackfile import raw_project_config
from mesh.trace import Request, trace
from tests import conformance
from tests.conftest import PROJECT_DIR, assert_refused, with_value, without

EXAMPLE = PROJECT_DIR / "examples" / "Pulumi.llm.yaml"


def example_raw() -> dict[str, Any]:
    return raw_project_config(yaml.safe_load(EXAMPLE.read_text()))


def edited(edits: dict[str, Any]) -> dict[str, Any]:
    """The example with each dotted path set (None removes it)."""
    raw = example_raw()
    for path, value in edits.items():
        raw = without(raw, path) if value is None else with_value(raw, path, value)
    return raw


def config_of(edits: dict[str, Any]):
    return parse_config(edited(edits), "llm")


def objects_of(edits: dict[str, Any]) -> list[dict]:
    return build_plan(config_of(edits)).objects()


def deployment(objects: list[dict], name: str) -> dict:
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return found


def pod(objects: list[dict], name: str) -> dict:
    return deployment(objects, name)["spec"]["template"]["spec"]


def server(objects: list[dict], name: str) -> dict:
    (container,) = [c for c in pod(objects, name)["containers"] if c["name"] == "server"]
    return container


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- the command line ----------------------------------------------------------------------

COMMANDS = [
    # (edits, deployment, command, args)
    (
        {},
        "chat-v2",
        ["vllm", "serve"],
        [
            "s3://acme-llm-weights/chat-8b/2026-10/",
            "--port=8000",
            "--served-model-name=acme/chat-8b",
            "--tensor-parallel-size=2",
            "--load-format=runai_streamer",
            "--max-model-len=16384",
            "--gpu-memory-utilization=0.92",
            "--enable-prefix-caching",
        ],
    ),
    (
        {"models.chat.llm": {}},
        "chat-v1",
        ["vllm", "serve"],
        [
            "s3://acme-llm-weights/chat-8b/2026-10/",
            "--port=8000",
            "--served-model-name=chat",
            "--tensor-parallel-size=2",
            "--load-format=runai_streamer",
        ],
    ),
    (
        {"models.chat.llm.weights": "download"},
        "chat-v1",
        ["vllm", "serve"],
        [
            "/models/chat/1",
            "--port=8000",
            "--served-model-name=acme/chat-8b",
            "--tensor-parallel-size=2",
            "--max-model-len=16384",
            "--gpu-memory-utilization=0.92",
            "--enable-prefix-caching",
        ],
    ),
    (
        {},
        "coder-v3",
        ["python3", "-m", "sglang.launch_server"],
        [
            "--model-path=s3://acme-llm-weights/coder-7b/3/",
            "--host=0.0.0.0",
            "--port=30000",
            "--served-model-name=coder",
            "--tp-size=1",
            "--load-format=runai_streamer",
            "--context-length=32768",
            "--enable-metrics",
        ],
    ),
    (
        {
            "models.coder.resources.gpu": 4,
            "models.coder.llm": {
                "servedModelName": "acme/coder",
                "tensorParallelSize": 4,
                "weights": "download",
                "extraArgs": ["--mem-fraction-static=0.85"],
            },
        },
        "coder-v3",
        ["python3", "-m", "sglang.launch_server"],
        [
            "--model-path=/models/coder/1",
            "--host=0.0.0.0",
            "--port=30000",
            "--served-model-name=acme/coder",
            "--tp-size=4",
            "--enable-metrics",
            "--mem-fraction-static=0.85",
        ],
    ),
]


@pytest.mark.parametrize(("edits", "name", "command", "args"), COMMANDS)
def test_the_server_runs_the_command_line_of_its_preset(edits, name, command, args):
    container = server(objects_of(edits), name)
    assert container["command"] == command
    assert container["args"] == args


WEIGHTS = [
    # (edits, deployment, init containers, volumes, server mounts)
    ({}, "chat-v1", [], ["tmp", "dshm"], ["/tmp", "/dev/shm"]),
    (
        {"models.chat.llm.weights": "download"},
        "chat-v1",
        ["fetch-model"],
        ["model", "tmp", "dshm"],
        ["/models", "/tmp", "/dev/shm"],
    ),
    ({}, "coder-v3", [], ["tmp", "dshm"], ["/tmp", "/dev/shm"]),
]


@pytest.mark.parametrize(("edits", "name", "inits", "volumes", "mounts"), WEIGHTS)
def test_streamed_weights_need_no_download_step(edits, name, inits, volumes, mounts):
    spec = pod(objects_of(edits), name)
    assert [c["name"] for c in spec.get("initContainers", [])] == inits
    assert [v["name"] for v in spec["volumes"]] == volumes
    assert [m["mountPath"] for m in server(objects_of(edits), name)["volumeMounts"]] == mounts


STORE_ENV = [
    # (edits, variable, value; None: not set)
    ({}, "AWS_REGION", "us-east-1"),
    ({}, "HOME", "/tmp"),
    ({}, "HF_HUB_OFFLINE", "1"),
    ({"models.chat.llm.env": {"HF_HUB_OFFLINE": "0"}}, "HF_HUB_OFFLINE", "0"),
    ({}, "RUNAI_STREAMER_S3_ENDPOINT", None),
    (
        {"storage.endpoint": {"host": "minio.minio.svc.cluster.local", "port": 9000, "tls": False}},
        "RUNAI_STREAMER_S3_ENDPOINT",
        "http://minio.minio.svc.cluster.local:9000",
    ),
    (
        {"storage.endpoint": {"host": "minio.minio.svc.cluster.local", "port": 9000, "tls": False}},
        "AWS_ENDPOINT_URL",
        "http://minio.minio.svc.cluster.local:9000",
    ),
    (
        {"storage.endpoint": {"host": "s3.example.com"}},
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING",
        "0",
    ),
    (
        {
            "storage.credentialsSecret": {"name": "llm-store"},
            "models.chat.roleArn": None,
            "models.coder.roleArn": None,
        },
        "AWS_ACCESS_KEY_ID",
        {"secretKeyRef": {"name": "llm-store", "key": "AWS_ACCESS_KEY_ID"}},
    ),
    (
        {"models.chat.llm.secretEnv": {"VLLM_API_KEY": {"secretName": "chat", "key": "api-key"}}},
        "VLLM_API_KEY",
        {"secretKeyRef": {"name": "chat", "key": "api-key"}},
    ),
]


@pytest.mark.parametrize(("edits", "variable", "value"), STORE_ENV)
def test_the_streamer_reads_the_store_with_the_storage_settings(edits, variable, value):
    assert env_of(server(objects_of(edits), "chat-v1")).get(variable) == value


# --- probes and start-up -------------------------------------------------------------------

PROBES = [
    # (edits, deployment, startup, readiness, liveness, liveness timeoutSeconds)
    ({}, "chat-v1", "/v1/models", "/v1/models", "/health", 5),
    (
        {"models.chat.llm.extraArgs": ["--api-key=$(CHAT_KEY)"]},
        "chat-v1",
        "/health",
        "/health",
        "/health",
        5,
    ),
    (
        {"models.chat.llm.secretEnv": {"VLLM_API_KEY": {"secretName": "chat", "key": "k"}}},
        "chat-v1",
        "/health",
        "/health",
        "/health",
        5,
    ),
    ({}, "coder-v3", "/health", "/health", "/health", 25),
]


@pytest.mark.parametrize(("edits", "name", "startup", "ready", "live", "timeout"), PROBES)
def test_probes_wait_for_the_loaded_model(edits, name, startup, ready, live, timeout):
    container = server(objects_of(edits), name)
    assert container["startupProbe"]["httpGet"]["path"] == startup
    assert container["readinessProbe"]["httpGet"]["path"] == ready
    assert container["livenessProbe"]["httpGet"]["path"] == live
    assert container["livenessProbe"]["timeoutSeconds"] == timeout
    assert {
        p["httpGet"]["port"] for p in (container["startupProbe"], container["livenessProbe"])
    } == {"http"}


BUDGETS = [
    # (edits, model, imagePull, download, serverStart, deadline)
    # streamed: 600s + 40Gi at 32 MiB/s while the startup probe waits
    ({}, "chat", 600, 0, 1880, 2540),
    # downloaded first: the copy is its own phase
    ({"models.chat.llm.weights": "download"}, "chat", 600, 1280, 600, 2540),
    ({}, "coder", 600, 0, 1240, 1900),
]


@pytest.mark.parametrize(("edits", "model", "pull", "download", "start", "deadline"), BUDGETS)
def test_the_start_up_budget_counts_loading_the_weights(
    edits, model, pull, download, start, deadline
):
    budget = config_of(edits).models[model].startup_budget()
    assert (budget.image_pull, budget.download, budget.server_start) == (pull, download, start)
    assert budget.deadline == deadline
    objects = objects_of(edits)
    name = "chat-v1" if model == "chat" else "coder-v3"
    assert deployment(objects, name)["spec"]["progressDeadlineSeconds"] == deadline
    probe = server(objects, name)["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == start


# --- /dev/shm ------------------------------------------------------------------------------

SHM = [
    # (edits, deployment, sizeLimit)
    ({}, "chat-v1", "4Gi"),  # 2 GPUs
    ({}, "coder-v3", "2Gi"),
    ({"models.chat.llm.shmSize": "16Gi"}, "chat-v1", "16Gi"),
    ({"models.coder.resources.gpu": 8}, "coder-v3", "16Gi"),
]


@pytest.mark.parametrize(("edits", "name", "size"), SHM)
def test_dev_shm_is_memory_sized_for_tensor_parallelism(edits, name, size):
    objects = objects_of(edits)
    (volume,) = [v for v in pod(objects, name)["volumes"] if v["name"] == "dshm"]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": size}
    mounts = {m["mountPath"]: m["name"] for m in server(objects, name)["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm"


def test_other_presets_get_no_shared_memory_volume():
    raw = edited({"models.coder": None})
    raw = with_value(
        raw,
        "models.embed",
        {
            "server": "triton",
            "roleArn": "arn:aws:iam::210987654321:role/embed",
            "resources": {"gpu": 1},
            "versions": {
                "v1": {
                    "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                    "modelPath": "e/1",
                    "replicas": 2,
                }
            },
            "stable": "v1",
        },
    )
    objects = build_plan(parse_config(raw, "llm")).objects()
    assert [v["name"] for v in pod(objects, "embed-v1")["volumes"]] == ["tmp"]


# --- what the config refuses ---------------------------------------------------------------

REFUSED = [
    # (edits, config path, words of the message)
    (
        {"models.chat.llm.tensorParallelSize": 4},
        "models.chat.llm.tensorParallelSize",
        ["4 differs from resources.gpu (2)", "one tensor-parallel rank per GPU"],
    ),
    (
        {
            "models.chat.llm.tensorParallelSize": 2,
            "models.chat.versions.v2.resources": {"gpu": 4},
        },
        "models.chat.llm.tensorParallelSize",
        ["versions.v2.resources.gpu (4)", "of version 'v2'"],
    ),
    (
        {"models.coder.resources": None},
        "models.coder.resources.gpu",
        ["needs at least one GPU per pod"],
    ),
    (
        {"models.chat.llm.extraArgs": ["--tensor-parallel-size=4"]},
        "models.chat.llm.extraArgs[0]",
        ["--tensor-parallel-size is set by the preset", "llm.tensorParallelSize"],
    ),
    (
        {"models.chat.llm.extraArgs": ["-tp", "4"]},
        "models.chat.llm.extraArgs[0]",
        ["-tp is set by the preset"],
    ),
    (
        {"models.chat.llm.extraArgs": ["--max_model_len=4096"]},
        "models.chat.llm.extraArgs[0]",
        ["--max-model-len is set by the preset", "llm.maxModelLen"],
    ),
    (
        {"models.chat.llm.extraArgs": ["--enable-lora", "--served-model=x"]},
        "models.chat.llm.extraArgs[1]",
        ["--served-model abbreviates --served-model-name"],
    ),
    (
        {"models.chat.llm.extraArgs": ["--port", "9000"]},
        "models.chat.llm.extraArgs[0]",
        ["--port is set by the preset (8000"],
    ),
    (
        {"models.chat.llm.extraArgs": ["--data-parallel-size=2"]},
        "models.chat.llm.extraArgs[0]",
        ["changes the GPUs per pod"],
    ),
    (
        {"models.coder.llm.extraArgs": ["--model-path=s3://other/x"]},
        "models.coder.llm.extraArgs[0]",
        ["--model-path is set by the preset"],
    ),
    (
        {"models.coder.llm.extraArgs": ["--tensor-parallel-size=2"]},
        "models.coder.llm.extraArgs[0]",
        ["--tensor-parallel-size is set by the preset"],
    ),
    (
        {"models.coder.llm.extraArgs": ["--context-length", "8192"]},
        "models.coder.llm.extraArgs[0]",
        ["--context-length is set by the preset", "llm.maxModelLen"],
    ),
    (
        {"models.coder.llm.extraArgs": ["--host=127.0.0.1"]},
        "models.coder.llm.extraArgs[0]",
        ["--host is set by the preset"],
    ),
    (
        {"models.chat.retries": {"attempts": 2, "perTryTimeout": "30s"}},
        "models.chat.retries.perTryTimeout",
        ["cut every streamed generation"],
    ),
    (
        {"models.chat.retries": {"attempts": 2, "retryOn": "connect-failure,5xx"}},
        "models.chat.retries.retryOn",
        ["5xx would retry a request the server may be generating"],
    ),
    (
        {"models.coder.retries": {"attempts": 1, "retryOn": "reset,504"}},
        "models.coder.retries.retryOn",
        ["reset, 504 would retry"],
    ),
    (
        {"models.coder.llm.env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123456789"}},
        "models.coder.llm.env.HF_TOKEN",
        ["llm.secretEnv.HF_TOKEN"],
    ),
    (
        {"models.coder.llm.weights": "stream", "models.coder.startup": {"download": "10m"}},
        "models.coder.startup.download",
        ["reads the model from S3 itself"],
    ),
    (
        {"models.coder.server": "triton"},
        "models.coder.llm",
        ["only allowed with server vllm or sglang"],
    ),
]


@pytest.mark.parametrize(("edits", "path", "words"), REFUSED)
def test_the_config_refuses_what_the_server_would_not_do(edits, path, words):
    assert_refused(config_of, edits, path, words)


ALLOWED = [
    # (edits, what parses: a row that fails here is refused by mistake)
    {"models.chat.llm.extraArgs": ["--enable-lora", "--max-loras=4", "--max-num-seqs=128"]},
    {"models.chat.llm.extraArgs": ['--model-loader-extra-config={"concurrency":16}']},
    {"models.coder.llm.extraArgs": ["--mem-fraction-static=0.8", "--chunked-prefill-size=4096"]},
    {"models.chat.retries": {"attempts": 2, "retryOn": "connect-failure,refused-stream,503"}},
    {"models.chat.llm.tensorParallelSize": 2},
]


@pytest.mark.parametrize("edits", ALLOWED)
def test_the_config_keeps_what_the_server_accepts(edits):
    config_of(edits)


# --- policy: the OpenAI routes open, admin and profiling closed ----------------------------

HOSTS = {"chat": "chat.llm.acme.com", "coder": "coder.llm.acme.com"}
POLICY = [
    # (model, method, path, verdict at the pod)
    ("chat", "POST", "/v1/chat/completions", "served"),
    ("chat", "POST", "/v1/completions", "served"),
    ("chat", "POST", "/v1/embeddings", "served"),
    ("chat", "GET", "/v1/models", "served"),
    ("chat", "GET", "/v1/chat/completions", "denied"),
    ("chat", "POST", "/v1/load_lora_adapter", "denied"),
    ("chat", "POST", "/v1/unload_lora_adapter", "denied"),
    ("chat", "POST", "/start_profile", "denied"),
    ("chat", "POST", "/stop_profile", "denied"),
    ("chat", "POST", "/reset_prefix_cache", "denied"),
    ("chat", "POST", "/sleep", "denied"),
    ("chat", "POST", "/wake_up", "denied"),
    ("chat", "POST", "/collective_rpc", "denied"),
    ("chat", "POST", "/pause", "denied"),
    ("chat", "GET", "/metrics", "denied"),
    ("chat", "GET", "/health", "denied"),
    ("chat", "POST", "/tokenize", "denied"),
    ("coder", "POST", "/v1/chat/completions", "served"),
    ("coder", "GET", "/v1/models/coder", "served"),
    ("coder", "POST", "/flush_cache", "denied"),
    ("coder", "POST", "/update_weights_from_disk", "denied"),
    ("coder", "POST", "/start_profile", "denied"),
    ("coder", "POST", "/load_lora_adapter", "denied"),
    ("coder", "POST", "/release_memory_occupation", "denied"),
    ("coder", "POST", "/generate", "denied"),
    ("coder", "GET", "/server_info", "denied"),
    ("coder", "GET", "/metrics", "denied"),
]


@pytest.fixture(scope="module")
def example_objects():
    config = parse_config(example_raw(), "llm")
    objects = stack_objects(config)
    return objects, gateway_workload(config, objects)


@pytest.mark.parametrize(("model", "method", "path", "verdict"), POLICY)
def test_the_policy_opens_only_the_openai_routes(example_objects, model, method, path, verdict):
    objects, gateway = example_objects
    request = Request(port=443, host=HOSTS[model], tls=True, method=method, path=path)
    result = trace(objects, gateway, request)
    assert result.final().verdict == verdict
    if model == "chat":
        assert result.split() == "v1 90% / v2 10%"


# --- streaming through the mesh ------------------------------------------------------------


def _virtual_service(objects: list[dict], name: str) -> dict:
    (found,) = [
        o for o in objects if o["kind"] == "VirtualService" and o["metadata"]["name"] == name
    ]
    return found


def test_streams_keep_istios_default_retries_and_the_configured_timeout():
    """No retries block: Istio's default (2 attempts on connect-failure, refused-stream,
    unavailable, cancelled; pilot/pkg/networking/core/route/retry/retry.go) fires only before
    the server has the request. No per-try timeout, and the route timeout is the model's."""
    objects = objects_of({})
    (chat_route,) = _virtual_service(objects, "chat")["spec"]["http"]
    assert chat_route["timeout"] == "600s"
    assert "retries" not in chat_route
    (coder_route,) = _virtual_service(objects, "coder")["spec"]["http"]
    assert "timeout" not in coder_route and "retries" not in coder_route


def test_gateway_api_routes_carry_the_request_timeout_and_no_backend_timeout():
    objects = objects_of({"routing": "gateway-api"})
    routes = [o for o in objects if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "chat"]
    assert routes
    for route in routes:
        for rule in route["spec"]["rules"]:
            assert rule["timeouts"] == {"request": "10m"}  # 600s, as Gateway API writes it


# --- conformance ---------------------------------------------------------------------------

VARIANTS = [
    {},
    {"models.chat.llm.weights": "download", "models.coder.llm.weights": "download"},
    {"routing": "gateway-api"},
    {"dataplane": "ambient"},
    {"storage.endpoint": {"host": "minio.minio.svc.cluster.local", "port": 9000, "tls": False}},
]


@pytest.mark.parametrize("edits", VARIANTS, ids=lambda e: ",".join(e) or "example")
def test_llm_objects_are_accepted_by_the_real_schemas(edits):
    config = config_of(edits)
    channel = config.platform.gateway_api_channel
    found = [
        problem
        for obj in build_plan(config).objects()
        for problem in conformance.problems(obj, gateway_api_channel=channel)
    ]
    assert found == []


MODES = [
    {},
    {"routing": "gateway-api"},
    {"dataplane": "ambient"},
    {"dataplane": "ambient", "routing": "gateway-api"},
]
MODE_CALLS = [
    # (method, path, verdict): the same answer whichever proxy enforces the policy
    ("POST", "/v1/chat/completions", "served"),
    ("GET", "/v1/models", "served"),
    ("POST", "/flush_cache", "denied"),
    ("POST", "/update_weights_from_disk", "denied"),
]


@pytest.mark.parametrize("edits", MODES, ids=lambda e: ",".join(e.values()) or "sidecar,istio")
def test_the_policy_holds_in_every_dataplane_and_routing_mode(edits):
    config = config_of(edits)
    objects = stack_objects(config)
    gateway = gateway_workload(config, objects)
    found = [
        (
            method,
            path,
            trace(
                objects, gateway, Request(443, HOSTS["coder"], tls=True, method=method, path=path)
            )
            .final()
            .verdict,
        )
        for method, path, _ in MODE_CALLS
    ]
    assert found == MODE_CALLS
