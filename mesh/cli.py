"""`python -m mesh`: work with a stack's config offline, with no cluster and no Pulumi CLI."""

from __future__ import annotations

import argparse
import sys

from mesh.config import ConfigError, prom_duration
from mesh.promql import DEFAULT_WINDOW, promql_report
from mesh.render import render_objects, to_yaml, traffic_table
from mesh.stackfile import DEFAULT_STACK, load_stack


def _render(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    sys.stdout.write(to_yaml(render_objects(stack.config, stack.secrets)))
    if not args.quiet:
        print(f"# stack {stack.name}\n{traffic_table(stack.config)}", file=sys.stderr)
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
    promql = commands.add_parser(
        "promql",
        help="print the PromQL that compares the versions of each model",
        description="Print, per model, the PromQL (request rate, error ratio, p50/p99 latency, "
        "canary vs stable errors) that the dashboard and alerts use, one series per version, "
        "ready to paste into Prometheus or Grafana.",
    )
    promql.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help=f"stack name or path to a stack file (default: {DEFAULT_STACK})",
    )
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
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
