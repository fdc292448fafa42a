"""Offline render: the objects a stack would create, as multi-document YAML (like
`helm template`), plus a short traffic table for humans."""

from __future__ import annotations

import yaml

from mesh.config import SECRET_PLACEHOLDER, Model, StackConfig
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


def version_role(model: Model, version: str) -> str:
    if model.progressive is not None:
        return "target" if version == model.target_version() else ""
    if model.canary and version == model.canary.version:
        return "canary"
    return "stable" if version == model.stable else ""


def version_row(model: Model, version: str) -> tuple[str, ...]:
    """TRAFFIC is the weighted split (Flagger's in progressive mode); MATCH names the rules that
    send requests to the version; MIRROR the share of live requests copied to it."""
    if model.progressive is not None:
        traffic = "flagger" if version == model.target_version() else "-"
    else:
        traffic = f"{model.traffic().get(version, 0)}%"
    rules = [rule for rule, match in model.ordered_matches() if match.version == version]
    shadow = model.mirror
    mirrored = f"{shadow.percent:g}%" if shadow and shadow.version == version else ""
    deployed = model.progressive is None or version == model.target_version()
    replicas = str(model.versions[version].replicas) if deployed else "-"
    return (version_role(model, version), traffic, ",".join(rules), mirrored, replicas)


def traffic_table(config: StackConfig) -> str:
    rows = [("MODEL", "SERVER", "VERSION", "ROLE", "TRAFFIC", "MATCH", "MIRROR", "REPLICAS")]
    for name in sorted(config.models):
        model = config.models[name]
        for version in sorted(model.versions):
            rows.append((name, model.server, version, *version_row(model, version)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in rows
    )
