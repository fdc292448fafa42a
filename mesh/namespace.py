"""The serving namespace, labelled for Istio sidecar injection, or in ambient mode for ztunnel
and the waypoint (mesh.ambient.namespace_labels)."""

from __future__ import annotations

from mesh.ambient import namespace_labels
from mesh.config import StackConfig
from mesh.k8s import metadata


def injection_labels(config: StackConfig) -> dict[str, str]:
    """`istio.io/rev` for revision-based (canary) control planes, else `istio-injection`.

    Never both: Istio reports that as IST0123 and the revision label is then ignored.
    """
    if config.istio.revision:
        return {"istio.io/rev": config.istio.revision}
    return {"istio-injection": "enabled"}


def dataplane_labels(config: StackConfig) -> dict[str, str]:
    """The namespace's mesh labels: injection for sidecars, enrolment for ambient."""
    return namespace_labels(config) if config.ambient() else injection_labels(config)


def namespace(config: StackConfig) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(config.namespace, None, "serving", dataplane_labels(config)),
    }
