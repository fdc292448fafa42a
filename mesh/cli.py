"""`python -m mesh`: work with a stack's config offline, with no cluster and no Pulumi CLI."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml

from mesh.checks import SEVERITIES, Finding, MeshCheckError, check, gate
from mesh.config import ConfigError, prom_duration
from mesh.diff import GATES, normalized, report, side
from mesh.gitbase import GitBaseError, render_base
from mesh.graph import gateway_name, mermaid
from mesh.plan import build_plan
from mesh.promql import DEFAULT_WINDOW, promql_report
from mesh.render import render_objects, to_yaml, traffic_table
from mesh.routing import routing_from_objects
from mesh.schema import stack_file_schema
from mesh.stackfile import (
    DEFAULT_STACK,
    LoadedStack,
    load_stack,
    raw_project_config,
    stack_file,
)


def _findings(stack: LoadedStack) -> tuple[int, list[Finding]]:
    """The mesh checks on exactly the objects the program registers (before secret masking)."""
    objects = build_plan(stack.config).objects()
    return len(objects), check(stack.config, objects)


def _render(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    # Refuse what `pulumi preview` would refuse, so render never shows an undeployable stack.
    findings = gate(stack.name, _findings(stack)[1])
    objects = render_objects(stack.config, stack.secrets)
    if args.graph:
        routing = routing_from_objects(objects, stack.config)
        sys.stdout.write(mermaid(routing, gateway_name(objects)))
    else:
        sys.stdout.write(to_yaml(objects))
    if not args.quiet:
        print(f"# stack {stack.name}\n{traffic_table(stack.config)}", file=sys.stderr)
        for finding in findings:
            if finding.severity == "warning":
                print(finding, file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    count, findings = _findings(stack)
    for finding in findings:
        print(finding)
    totals = ", ".join(
        f"{sum(f.severity == s for f in findings)} {s}{'s' if s != 'info' else ''}"
        for s in SEVERITIES
    )
    print(f"# stack {stack.name}: {count} objects checked: {totals}")
    return 1 if any(f.severity == "error" for f in findings) else 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(stack_file_schema(), indent=2))
    return 0


def _promql(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    unknown = sorted(set(args.model) - set(stack.config.models))
    if unknown:
        defined = ", ".join(sorted(stack.config.models))
        print(
            f"ml-mesh: stack '{stack.name}' has no model {unknown[0]!r}; defined: {defined}",
            file=sys.stderr,
        )
        return 2
    sys.stdout.write(promql_report(stack.name, stack.config, args.model, args.window))
    return 0


def _window(value: str) -> str:
    try:
        return prom_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _diff(args: argparse.Namespace) -> int:
    name, path = stack_file(args.stack)
    head = load_stack(args.stack)
    try:
        base = render_base(args.base, name)
    except GitBaseError as exc:
        print(f"ml-mesh: diff of stack '{name}' against {args.base}: {exc}", file=sys.stderr)
        return 2
    head_raw = raw_project_config(_yaml_document(path))
    label = f"base `{args.base}` ({base.commit[:12]})"
    if not base.exists:
        label += ", where the stack does not exist yet"
    markdown, refusals = report(
        name,
        label,
        side(base.objects, base.config, base.raw),
        side(normalized(render_objects(head.config, head.secrets)), head.config, head_raw),
        set(args.allow),
    )
    sys.stdout.write(markdown)
    for refusal in refusals:
        print(f"ml-mesh: refused ({refusal.gate}): {refusal.reason}", file=sys.stderr)
    return 1 if refusals else 0


def _yaml_document(path: Path) -> object:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _stack_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help=f"stack name (reads Pulumi.<stack>.yaml) or path to a stack file (default: {DEFAULT_STACK})",
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m mesh", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render",
        help="print the Kubernetes objects a stack creates, as multi-document YAML",
        description="Print, as multi-document YAML on stdout, exactly the objects `pulumi up` "
        "would create for a stack; a traffic table goes to stderr.",
    )
    _stack_argument(render)
    render.add_argument("-q", "--quiet", action="store_true", help="no traffic table on stderr")
    render.add_argument(
        "--graph",
        action="store_true",
        help="print the routing as a Mermaid flowchart (Markdown) instead of the objects",
    )
    render.set_defaults(run=_render)
    check_ = commands.add_parser(
        "check",
        help="run the mesh analyzers (istioctl analyze rules) on a stack, offline",
        description="Print every finding of the mesh checks the program runs before `pulumi "
        "preview` registers anything (IST codes as istioctl analyze reports them). Exit 1 when "
        "any finding is an error, 2 on invalid config.",
    )
    _stack_argument(check_)
    check_.set_defaults(run=_check)
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of Pulumi.<stack>.yaml (for editor validation)",
        description="Print the JSON Schema of a whole Pulumi.<stack>.yaml, generated from the "
        "stack config models; point your editor's YAML support at it.",
    )
    schema.set_defaults(run=_schema)
    promql = commands.add_parser(
        "promql",
        help="print the PromQL that compares the versions of each model",
        description="Print, per model, the PromQL (request rate, error ratio, p50/p99 latency, "
        "canary vs stable errors) that the dashboard and alerts use, one series per version, "
        "ready to paste into Prometheus or Grafana.",
    )
    _stack_argument(promql)
    promql.add_argument(
        "-m", "--model", action="append", default=[], help="only this model (repeatable)"
    )
    promql.add_argument(
        "-w",
        "--window",
        type=_window,
        default=DEFAULT_WINDOW,
        help=f"rate window, a Prometheus duration (default: {DEFAULT_WINDOW})",
    )
    promql.set_defaults(run=_promql)
    diff = commands.add_parser(
        "diff",
        help="Markdown report of what a change does to a stack; non-zero exit on unsafe changes",
        description="Render the stack at a git ref (with that ref's code) and in the working "
        "tree and print, as Markdown for a pull request, the traffic before and after, the "
        "objects added, removed and changed, and the routing after the change. Exits 1 when a "
        "gate refuses the change: "
        + "; ".join(f"{gate}: {why}" for gate, why in GATES.items())
        + ".",
    )
    diff.add_argument("stack", help="stack name (Pulumi.<stack>.yaml in the project)")
    diff.add_argument("--base", required=True, help="git ref to compare with, e.g. origin/main")
    diff.add_argument(
        "--allow",
        action="append",
        default=[],
        choices=sorted(GATES),
        metavar="GATE",
        help=f"override a gate on purpose (repeatable): {', '.join(sorted(GATES))}",
    )
    diff.set_defaults(run=_diff)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, MeshCheckError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left early (`python -m mesh render | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
