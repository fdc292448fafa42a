"""Helm releases a stack installs, described as plain data.

A chart is rendered by Pulumi's Helm support at `pulumi up` (`kubernetes.helm.sh/v4.Chart`:
the provider pulls the chart, renders its templates with `values` and registers every object
as a child), so the builders cannot produce its objects byte for byte. What they can say
exactly is the release (chart, version, namespace, values), and the few objects of it that the
rest of the stack relies on, modelled from the chart's templates at that version (`modelled`):
render, check and trace read those, the Pulumi program never registers them itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A release as one object, for `mesh render --charts` and `mesh diff` (not a Kubernetes kind:
# named after the Pulumi resource type `kubernetes:helm.sh/v4:Chart`, never applied).
CHART_API_VERSION = "helm.sh/v4"
CHART_KIND = "Chart"


@dataclass(frozen=True)
class HelmChart:
    """One Helm release: registered as `kubernetes:helm.sh/v4:Chart` named `name`."""

    name: str
    namespace: str
    chart: str
    version: str
    values: dict[str, Any]
    modelled: tuple[dict, ...] = field(default=())
    source: str = ""

    def as_object(self) -> dict[str, Any]:
        """The release as one object, `{apiVersion: helm.sh/v4, kind: Chart, metadata: {name,
        namespace}, spec: {chart, version, values}, status: {modelled}}`: `mesh diff` compares
        the spec (a picker's failureMode changes only these values) and traces its journeys
        through the modelled objects, which follow from the spec and are not compared."""
        return {
            "apiVersion": CHART_API_VERSION,
            "kind": CHART_KIND,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"chart": self.chart, "version": self.version, "values": self.values},
            "status": {"modelled": list(self.modelled)},
        }


def is_chart_object(obj: dict[str, Any]) -> bool:
    """A release as `HelmChart.as_object` writes it."""
    return obj.get("apiVersion") == CHART_API_VERSION and obj.get("kind") == CHART_KIND


def release(obj: dict[str, Any]) -> dict[str, Any]:
    """A release object without what the chart's objects are modelled as (what is compared)."""
    return {key: value for key, value in obj.items() if key != "status"}


def modelled_objects(charts: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The modelled objects of release objects (`as_object`), for tracing."""
    return [o for c in charts or [] for o in (c.get("status") or {}).get("modelled") or []]
