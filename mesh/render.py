"""Offline render: the objects a stack would create, as multi-document YAML (like
`helm template`), plus a short traffic table for humans."""

from __future__ import annotations

import yaml

from mesh.config import SECRET_PLACEHOLDER, StackConfig
from mesh.plan import build_plan
from mesh.secrets import replace_secrets


class _Dumper(yaml.SafeDumper):
    """Block style, and no YAML anchors/aliases for repeated sub-objects."""

    def ignore_aliases(self, data):
        return True


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Multi-line strings (the dashboard JSON) as literal blocks, readable line by line."""
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", data, style="|" if "\n" in data else None
    )


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict]) -> str:
    return yaml.dump_all(
        objects, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )


def render_objects(config: StackConfig, secrets: set[str]) -> list[dict]:
    """What the stack creates, with every secret value masked."""
    mask = lambda _: SECRET_PLACEHOLDER  # noqa: E731
    return [replace_secrets(obj, secrets, mask) for obj in build_plan(config).objects()]


def traffic_table(config: StackConfig) -> str:
    rows = [("MODEL", "SERVER", "VERSION", "ROLE", "TRAFFIC", "REPLICAS")]
    for name in sorted(config.models):
        model = config.models[name]
        traffic = model.traffic()
        for version in sorted(model.versions):
            role = "stable" if version == model.stable else ""
            if model.canary and version == model.canary.version:
                role = "canary"
            replicas = model.versions[version].replicas
            rows.append(
                (name, model.server, version, role, f"{traffic.get(version, 0)}%", str(replicas))
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows
    )
