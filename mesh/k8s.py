"""Small helpers shared by every builder: object metadata and the labels ml-mesh puts on it."""

from __future__ import annotations

from mesh.config import StackConfig

PART_OF = "ml-mesh"


def common_labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/component": component,
    }


def metadata(
    name: str,
    namespace: str | None,
    component: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**(labels or {}), **common_labels(component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def istio_networking(config: StackConfig) -> str:
    return f"networking.istio.io/{config.istio.api_version}"
