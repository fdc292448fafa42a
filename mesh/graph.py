"""A Mermaid flowchart of a stack's routing: gateway and mesh -> model -> versions, with the
weights, match rules and mirrors on the edges. GitHub renders it in PR comments and READMEs."""

from __future__ import annotations

import re

from mesh.routing import FLAGGER, ModelRouting, describe_analysis


def _id(*parts: str) -> str:
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts)


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _version_label(routing: ModelRouting, version: str) -> str:
    role = routing.roles.get(version)
    return f"{version} · {role}" if role else version


def _model_lines(routing: ModelRouting) -> list[str]:
    model = _id("m", routing.name)
    lines = [f"  {model}[{_label('<br/>'.join([routing.name, *routing.hosts]))}]"]
    lines += [f"  gateway --> {model}", f"  mesh --> {model}"]
    for version, traffic in routing.versions.items():
        node = _id("v", routing.name, version)
        lines.append(f"  {node}[{_label(_version_label(routing, version))}]")
        edges: list[str] = []
        if routing.owner == FLAGGER:
            edges.append(f"{model} -->|{_label(describe_analysis(routing.analysis))}| {node}")
        if traffic.weight > 0:
            edges.append(f"{model} -->|{_label(f'{traffic.weight:g}%')}| {node}")
        edges += [f"{model} -->|{_label(f'match {rule}')}| {node}" for rule in traffic.matches]
        if traffic.mirror > 0:
            edges.append(f"{model} -.->|{_label(f'mirror {traffic.mirror:g}%')}| {node}")
        if not edges:  # deployed, no traffic: keep it in the picture without an arrow
            edges.append(f"{model} ~~~ {node}")
        lines += [f"  {edge}" for edge in edges]
    return lines


def mermaid(routings: dict[str, ModelRouting], gateway: str) -> str:
    """The flowchart as a fenced ```mermaid block."""
    lines = [
        "```mermaid",
        "flowchart LR",
        f"  gateway{{{{{_label(f'Gateway {gateway}')}}}}}",
        f"  mesh([{_label('mesh clients')}])",
    ]
    for routing in routings.values():
        lines += _model_lines(routing)
    return "\n".join([*lines, "```"]) + "\n"


def gateway_name(objects: list[dict]) -> str:
    for obj in objects:
        if obj.get("kind") == "Gateway":
            return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
    return "?"
