"""`python -m mesh`: work with a stack's config offline, with no cluster and no Pulumi CLI."""

from __future__ import annotations

import argparse
import json
import sys

from mesh.checks import SEVERITIES, Finding, MeshCheckError, check, gate
from mesh.config import ConfigError
from mesh.plan import build_plan
from mesh.render import render_objects, to_yaml, traffic_table
from mesh.schema import stack_file_schema
from mesh.stackfile import DEFAULT_STACK, LoadedStack, load_stack


def _findings(stack: LoadedStack) -> tuple[int, list[Finding]]:
    """The mesh checks on exactly the objects the program registers (before secret masking)."""
    objects = build_plan(stack.config).objects()
    return len(objects), check(stack.config, objects)


def _render(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    # Refuse what `pulumi preview` would refuse, so render never shows an undeployable stack.
    findings = gate(stack.name, _findings(stack)[1])
    sys.stdout.write(to_yaml(render_objects(stack.config, stack.secrets)))
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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m mesh", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    render = commands.add_parser(
        "render",
        help="print the Kubernetes objects a stack creates, as multi-document YAML",
        description="Print, as multi-document YAML on stdout, exactly the objects `pulumi up` "
        "would create for a stack; a traffic table goes to stderr.",
    )
    render.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help=f"stack name (reads Pulumi.<stack>.yaml) or path to a stack file (default: {DEFAULT_STACK})",
    )
    render.add_argument("-q", "--quiet", action="store_true", help="no traffic table on stderr")
    render.set_defaults(run=_render)
    check_ = commands.add_parser(
        "check",
        help="run the mesh analyzers (istioctl analyze rules) on a stack, offline",
        description="Print every finding of the mesh checks the program runs before `pulumi "
        "preview` registers anything (IST codes as istioctl analyze reports them). Exit 1 when "
        "any finding is an error, 2 on invalid config.",
    )
    check_.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help=f"stack name or path to a stack file (default: {DEFAULT_STACK})",
    )
    check_.set_defaults(run=_check)
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of Pulumi.<stack>.yaml (for editor validation)",
        description="Print the JSON Schema of a whole Pulumi.<stack>.yaml, generated from the "
        "stack config models; point your editor's YAML support at it.",
    )
    schema.set_defaults(run=_schema)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ConfigError, MeshCheckError) as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
