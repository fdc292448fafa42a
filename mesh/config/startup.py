"""How long a model's pod may take to start, and how its Deployments roll out.

A new pod is ready only after three phases, one after the other: the kubelet pulls the image,
the init container copies the model from S3 (the presets with a download), and the server
loads it while the startup probe waits (`periodSeconds x failureThreshold` after the container
starts, kubelet `prober`). The start-up budget is their sum plus a margin, and every timer that
can give up on a rollout is set at or above it:

- the Deployment's `progressDeadlineSeconds` (Kubernetes default 600): once it passes without
  progress the Deployment gets `Progressing=False`, reason `ProgressDeadlineExceeded`
  (kubernetes pkg/controller/deployment/progress.go), which Flagger treats as final and rolls
  back on (v1.44); Flagger copies the field to `<m>-primary` (pkg/canary/deployment_controller.go
  `createPrimaryDeployment`);
- the Canary's `progressDeadlineSeconds` (Flagger default 600, canary.go
  `GetProgressDeadlineSeconds`): the same number, so neither gives up before the other;
- Pulumi's await of the Deployment (default 10 minutes), through `customTimeouts` (see
  `models.workloads.deployment_timeouts`).

The deadline counts time without progress, and each pod that becomes available is progress, so
one budget covers one pod; Pulumi waits for the whole rollout, which is one budget per pod that
is replaced one at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from mesh.config.base import _Config
from mesh.config.errors import ConfigPathError
from mesh.config.formats import Duration, duration_millis

# Image pull by image size class. A GPU server image such as nvcr.io/nvidia/tritonserver is
# 10+ GB (CUDA, TensorRT, every backend): several minutes on a cold node even at 50 MB/s with
# extraction. CPU serving images (tensorflow/serving, a custom server) are a few hundred MB.
PULL_SECONDS = {"small": 120, "large": 600}
LARGE_IMAGE_REGISTRIES = ("nvcr.io/",)
# The model copy of the init container (`aws s3 sync`, limited to 1 CPU), when no `download`
# is given: `diskSize` (the largest model the volume holds) at 32 MiB/s, a rate a single
# sync with the CLI's default 10 concurrent requests keeps up from S3 in the same region.
DOWNLOAD_BYTES_PER_SECOND = 32 * 2**20
# Servers that read the model from S3 themselves while starting (Triton's s3:// repository;
# vLLM and SGLang streaming s3:// with the Run:ai model streamer, `llm.weights: stream`; see
# `Model.streams_weights`): their download is inside `serverStart`.
# The window the startup probe allowed before budgets existed: 5s x 120.
SERVER_START_SECONDS = 600
STARTUP_PROBE_PERIOD_SECONDS = 5
# Scheduling, the sidecar becoming ready before the app (holdApplicationUntilProxyStarts or a
# native sidecar), and the first readiness probes once the startup probe passed.
MARGIN_SECONDS = 60


def _seconds(duration: str) -> int:
    """Whole seconds, rounded up: Kubernetes takes these fields in seconds."""
    return math.ceil(duration_millis(duration) / 1000)


class Startup(_Config):
    """The phases of a pod's start, each optional: unset ones are derived from the model."""

    image_pull: Duration | None = Field(
        default=None,
        description="time to pull the server image; default 2m, 10m for GPU images "
        "(server triton, vllm or sglang, a GPU request or an nvcr.io image)",
    )
    download: Duration | None = Field(
        default=None,
        description="time the init container takes to copy the model; default diskSize at "
        "32 MiB/s (not for triton, nor vllm/sglang streaming their weights, which read S3 "
        "while starting: count it in serverStart)",
    )
    server_start: Duration | None = Field(
        default=None,
        description="time the server may take to load the model and report ready: the "
        "startup probe's window (default 10m; for triton and streaming vllm/sglang 10m plus "
        "diskSize at 32 MiB/s, as they read S3 while starting)",
    )
    progress_deadline: Duration | None = Field(
        default=None,
        description="progressDeadlineSeconds of the Deployments and the Canary; default the "
        "start-up budget, never below it",
    )

    @model_validator(mode="after")
    def _probe_window(self) -> Startup:
        if self.server_start is not None and _seconds(self.server_start) < (
            2 * STARTUP_PROBE_PERIOD_SECONDS
        ):
            raise ConfigPathError(
                ("serverStart",),
                f"{self.server_start} is shorter than two startup probe periods "
                f"({2 * STARTUP_PROBE_PERIOD_SECONDS}s); use at least 10s",
            )
        return self


@dataclass(frozen=True)
class StartupBudget:
    """Seconds of each phase of one pod's start, and the deadline every timer gets."""

    image_pull: int
    download: int
    server_start: int
    margin: int
    deadline: int  # progressDeadlineSeconds: the explicit one, or the total

    @property
    def total(self) -> int:
        return self.image_pull + self.download + self.server_start + self.margin

    @property
    def startup_failure_threshold(self) -> int:
        """The startup probe's failureThreshold: serverStart in probe periods, rounded up."""
        return math.ceil(self.server_start / STARTUP_PROBE_PERIOD_SECONDS)

    def explain(self) -> str:
        return (
            f"imagePull {self.image_pull}s + download {self.download}s + serverStart "
            f"{self.server_start}s + margin {self.margin}s = {self.total}s"
        )


Rollout = Literal["surge", "replace"]


def startup_budget(
    startup: Startup, server: str, large_image: bool, disk_bytes: int, reads_store: bool
) -> StartupBudget:
    """The budget of one model; raises ConfigPathError (under `startup`) on a contradiction.

    `reads_store`: the server reads the model from S3 itself while it starts (no download
    step; the copy is counted in serverStart)."""
    if startup.download is not None and reads_store:
        raise ConfigPathError(
            ("startup", "download"),
            f"server {server!r} reads the model from S3 itself while it starts, there is no "
            "download before it; count that time in startup.serverStart instead",
        )
    pull = (
        _seconds(startup.image_pull)
        if startup.image_pull is not None
        else PULL_SECONDS["large" if large_image else "small"]
    )
    if reads_store:
        download = 0
    elif startup.download is not None:
        download = _seconds(startup.download)
    else:
        download = math.ceil(disk_bytes / DOWNLOAD_BYTES_PER_SECOND)
    if startup.server_start is not None:
        server_start = _seconds(startup.server_start)
    elif reads_store:
        # Its copy from S3 (into the diskSize cache) happens while the probe waits.
        server_start = SERVER_START_SECONDS + math.ceil(disk_bytes / DOWNLOAD_BYTES_PER_SECOND)
    else:
        server_start = SERVER_START_SECONDS
    # Probe windows are whole periods, so the budget counts the window the probe really gets.
    server_start = math.ceil(server_start / STARTUP_PROBE_PERIOD_SECONDS)
    server_start *= STARTUP_PROBE_PERIOD_SECONDS
    total = pull + download + server_start + MARGIN_SECONDS
    deadline = total
    if startup.progress_deadline is not None:
        deadline = _seconds(startup.progress_deadline)
        budget = StartupBudget(pull, download, server_start, MARGIN_SECONDS, deadline)
        if deadline < total:
            raise ConfigPathError(
                ("startup", "progressDeadline"),
                f"{startup.progress_deadline} ({deadline}s) is below the start-up budget "
                f"({budget.explain()}): Kubernetes would mark a pod that is still starting "
                "ProgressDeadlineExceeded and Flagger would roll it back; raise it to at least "
                f"{total}s, remove it, or lower the phases of startup",
            )
    return StartupBudget(pull, download, server_start, MARGIN_SECONDS, deadline)
