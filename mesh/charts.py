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
