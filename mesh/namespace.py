"""The serving namespace, labelled for Istio sidecar injection."""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.k8s import metadata


def injection_labels(config: StackConfig) -> dict[str, str]:
    """`istio.io/rev` for revision-based (canary) control planes, else `istio-injection`.

    Never both: Istio reports that as IST0123 and the revision label is then ignored.
    """
    if config.istio.revision:
        return {"istio.io/rev": config.istio.revision}
    return {"istio-injection": "enabled"}


def namespace(config: StackConfig) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(config.namespace, None, "serving", injection_labels(config)),
    }
