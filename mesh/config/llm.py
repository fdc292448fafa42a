"""Settings of the LLM server presets (`server: vllm` and `server: sglang`).

Both serve an OpenAI-compatible HTTP API from one process per pod that spans every GPU of the
pod through tensor parallelism. The block holds what differs per model (the name clients send
as `model`, the context length, extra engine flags); what the preset derives (port, probes,
the s3:// model location, the tensor-parallel size from the GPU count) is in `models.presets`.
The rules that need the server and the GPU count (a tensor-parallel size equal to the GPUs per
pod, extra flags that the preset already sets) are `Model`'s, see mesh.config.model.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import (
    _CREDENTIAL_VALUE,
    DnsSubdomain,
    EnvName,
    EnvValue,
    Quantity,
    SecretKey,
    credential_problem,
)

LLM_SERVERS = frozenset({"vllm", "sglang"})

# What clients send as `model` in an OpenAI request: the servers compare it to the served
# names as a plain string, so anything printable works; ml-mesh keeps to Hugging Face style
# repository names (`org/name`, letters, digits, `._-`).
ServedModelName = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$")
]


class SecretEnvRef(_Config):
    """A key of an existing Secret in the serving namespace (HF_TOKEN, a vLLM API key...)."""

    secret_name: DnsSubdomain
    key: SecretKey


class LlmServer(_Config):
    """Per-model settings of the vllm and sglang presets (`llm:` next to `server:`)."""

    served_model_name: ServedModelName | None = Field(
        default=None,
        description="the name clients send as `model` and /v1/models lists (vLLM and SGLang "
        "--served-model-name); default: the model's name in this stack",
    )
    max_model_len: Annotated[int, Field(strict=True, ge=16, le=10_000_000)] | None = Field(
        default=None,
        description="context length in tokens, prompt plus generation (vLLM --max-model-len, "
        "SGLang --context-length); default: the model's own config.json",
    )
    tensor_parallel_size: Annotated[int, Field(strict=True, ge=1, le=16)] | None = Field(
        default=None,
        description="GPUs one server process shards the model over (vLLM "
        "--tensor-parallel-size, SGLang --tp-size); must equal the GPUs per pod "
        "(resources.gpu); default: that count",
    )
    weights: Literal["stream", "download"] = Field(
        default="stream",
        description="stream: the server reads s3:// itself with the Run:ai model streamer "
        "(--load-format runai_streamer), weights go straight to GPU memory; download: an init "
        "container copies the version to diskSize of local disk first (for images without "
        "the streamer, or checkpoints that are not safetensors)",
    )
    shm_size: Quantity | None = Field(
        default=None,
        description="size limit of /dev/shm (a memory-backed emptyDir), used by NCCL and "
        "PyTorch between tensor-parallel workers; default 2Gi per GPU, at least 2Gi",
    )
    extra_args: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default=[],
        description="more engine flags, appended after the preset's (e.g. "
        "--gpu-memory-utilization=0.9); flags the preset sets are refused",
    )
    env: dict[EnvName, EnvValue] = Field(
        default={}, description="more environment variables of the server container"
    )
    secret_env: dict[EnvName, SecretEnvRef] = Field(
        default={},
        description="environment variables read from keys of existing Secrets (HF_TOKEN, "
        "VLLM_API_KEY, ...)",
    )

    @model_validator(mode="after")
    def _no_credentials_in_clear(self) -> LlmServer:
        for name, value in self.env.items():
            problem = credential_problem(name, value)
            if problem:
                raise ConfigPathError(
                    ("env", name),
                    f"{problem}; a Deployment shows env values to anyone who can read it: "
                    f"reference an existing Secret with llm.secretEnv.{name} {{secretName, key}}",
                )
        for index, arg in enumerate(self.extra_args):
            if _CREDENTIAL_VALUE.search(arg):
                raise ConfigPathError(
                    ("extraArgs", index),
                    "contains an access key or a private key; pass it from a Secret with "
                    "llm.secretEnv instead",
                )
        for name in self.secret_env:
            if name in self.env:
                raise ConfigPathError(("secretEnv", name), f"{name} is already set by env")
        return self


# Flags each preset writes on the command line (models.presets), by every spelling the
# server's argparse accepts, with why an extra copy is refused. argparse keeps the last
# occurrence of a flag, so a copy in extraArgs would silently win over the preset.
# vLLM: vllm/engine/arg_utils.py `EngineArgs.add_cli_args` and
# vllm/entrypoints/openai/cli_args.py `make_arg_parser`; SGLang: python/sglang/srt/
# server_args.py `ServerArgs.add_cli_args`.
_SET_BY_PRESET = "is set by the preset"
PRESET_FLAGS: dict[str, dict[str, str]] = {
    "vllm": {
        "--model": f"{_SET_BY_PRESET} (the version's modelPath in the model bucket)",
        "--host": f"{_SET_BY_PRESET} (the server listens on every address of the pod)",
        "--port": f"{_SET_BY_PRESET} (8000: the Service, probes and routes use it)",
        "--served-model-name": f"{_SET_BY_PRESET}: use llm.servedModelName",
        "--max-model-len": f"{_SET_BY_PRESET}: use llm.maxModelLen",
        "--tensor-parallel-size": f"{_SET_BY_PRESET}: use llm.tensorParallelSize",
        "-tp": f"{_SET_BY_PRESET}: use llm.tensorParallelSize",
        "--load-format": f"{_SET_BY_PRESET}: use llm.weights",
        "--download-dir": f"{_SET_BY_PRESET}: use llm.weights",
        "--pipeline-parallel-size": "changes the GPUs per pod (tensor x pipeline "
        "parallel); ml-mesh keeps one tensor-parallel rank per GPU",
        "-pp": "changes the GPUs per pod; ml-mesh keeps one tensor-parallel rank per GPU",
        "--data-parallel-size": "changes the GPUs per pod; scale with replicas instead",
        "-dp": "changes the GPUs per pod; scale with replicas instead",
    },
    "sglang": {
        "--model-path": f"{_SET_BY_PRESET} (the version's modelPath in the model bucket)",
        "--model": f"{_SET_BY_PRESET} (the version's modelPath in the model bucket)",
        "--host": f"{_SET_BY_PRESET} (the server listens on every address of the pod)",
        "--port": f"{_SET_BY_PRESET} (30000: the Service, probes and routes use it)",
        "--served-model-name": f"{_SET_BY_PRESET}: use llm.servedModelName",
        "--context-length": f"{_SET_BY_PRESET}: use llm.maxModelLen",
        "--tp-size": f"{_SET_BY_PRESET}: use llm.tensorParallelSize",
        "--tensor-parallel-size": f"{_SET_BY_PRESET}: use llm.tensorParallelSize",
        "--tp": f"{_SET_BY_PRESET}: use llm.tensorParallelSize",
        "--load-format": f"{_SET_BY_PRESET}: use llm.weights",
        "--download-dir": f"{_SET_BY_PRESET}: use llm.weights",
        "--enable-metrics": f"{_SET_BY_PRESET} (the dashboards and alerts read /metrics)",
        "--pp-size": "changes the GPUs per pod; ml-mesh keeps one tensor-parallel rank per GPU",
        "--pipeline-parallel-size": "changes the GPUs per pod; ml-mesh keeps one "
        "tensor-parallel rank per GPU",
        "--dp-size": "changes the GPUs per pod; scale with replicas instead",
        "--data-parallel-size": "changes the GPUs per pod; scale with replicas instead",
        "--dp": "changes the GPUs per pod; scale with replicas instead",
    },
}


def preset_flag(server: str, arg: str) -> str | None:
    """Why `arg` may not be an extra flag of `server`, or None when it may.

    Matches `--flag` and `--flag=value`, with `_` read as `-` (vLLM's FlexibleArgumentParser
    accepts both), and any abbreviation of a preset flag: argparse resolves an unambiguous
    prefix to the full flag (allow_abbrev) and refuses an ambiguous one, so a prefix is
    either the preset's flag again or a start-up error."""
    flag = arg.split("=", 1)[0]
    if flag.startswith("--"):
        flag = flag.replace("_", "-")
    table = PRESET_FLAGS[server]
    if flag in table:
        return f"{flag} {table[flag]}"
    if flag.startswith("--") and len(flag) > 3:
        for full, reason in table.items():
            if full.startswith(flag):
                return f"{flag} abbreviates {full}, and {full} {reason}"
    return None
