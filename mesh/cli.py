"""`python -m mesh`: work with a stack's config offline, with no cluster and no Pulumi CLI."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import yaml

from mesh.checks import MeshCheckError, check, gate
from mesh.checks.pack import read_pack_config
from mesh.checks.report import FORMATS, summary, unique
from mesh.checks.report import render as render_findings
from mesh.checks.snapshot import SnapshotError, load_snapshot
from mesh.config import ConfigError, prom_duration
from mesh.diff import GATES, normalized, report, side, stricter_pack
from mesh.gitbase import GitBaseError, PendingBase, paused_collector
from mesh.graph import gateway_name, mermaid
from mesh.journeys import gateway_workload, journeys, stack_objects, table, to_json
from mesh.plan import build_plan
from mesh.promql import DEFAULT_WINDOW, promql_report
from mesh.reference import reference_markdown
from mesh.render import chart_comment, masked, to_json_documents, to_yaml, traffic_table
from mesh.routing import routing_from_objects
from mesh.schema import stack_file_schema
from mesh.stackfile import (
    DEFAULT_STACK,
    load_stack,
    read_stack_document,
    stack_file,
)
from mesh.stacks import KUBECONFIG_PREFIX, find_stacks, matrices
from mesh.trace import Objects, Request, Trace, Workload, load_files, trace, trace_process
from mesh.trace.flagger import expand


def _render(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    plan = build_plan(stack.config)
    planned = plan.objects()  # built once: checked, then masked and shown
    # Refuse what `pulumi preview` would refuse, so render never shows an undeployable stack.
    # The charts' objects too (Plan.cluster_objects): the pack sees them at preview.
    findings = gate(stack.name, check(stack.config, plan.cluster_objects()))
    objects = masked(planned, stack.secrets)
    charts = plan.charts()
    if args.charts:  # the releases as objects after the stack's (what `mesh diff` reads)
        objects = [*objects, *masked([c.as_object() for c in charts], stack.secrets)]
        charts = []
    if args.graph:
        routing = routing_from_objects(objects, stack.config)
        sys.stdout.write(mermaid(routing, gateway_name(objects)))
    elif args.format == "json":
        sys.stdout.write(to_json_documents(objects))
        if charts:
            # JSON documents hold no comments: the releases are named on stderr instead.
            names = ", ".join(f"{c.namespace}/{c.name}" for c in charts)
            print(f"# not shown: Helm releases {names} (render as YAML)", file=sys.stderr)
    else:
        sys.stdout.write(to_yaml(objects))
        # The charts' objects exist once Pulumi renders the charts: each release is shown
        # as comments, so the output stays applicable as it is.
        for chart in charts:
            sys.stdout.write(chart_comment(chart))
    if not args.quiet:
        print(f"# stack {stack.name}\n{traffic_table(stack.config)}", file=sys.stderr)
        for finding in findings:
            if finding.severity == "warning":
                print(finding, file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    stack = load_stack(args.stack)
    cluster = load_snapshot(args.with_) if args.with_ else None
    objects = build_plan(stack.config).cluster_objects()
    findings = unique(check(stack.config, objects, cluster=cluster))
    sys.stdout.write(render_findings(findings, args.output))
    closing = summary(stack.name, len(objects), findings, None if cluster is None else len(cluster))
    # Machine-readable output is the findings alone, as istioctl's: the summary goes to stderr.
    print(closing, file=sys.stdout if args.output == "text" else sys.stderr)
    return 1 if any(f.fails for f in findings) else 0


def _schema(args: argparse.Namespace) -> int:
    print(json.dumps(stack_file_schema(), indent=2))
    return 0


def _reference(args: argparse.Namespace) -> int:
    sys.stdout.write(reference_markdown())
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


# `mesh diff` exit codes: 0 nothing refused, 1 refused, 2 bad config or an unknown ref,
# 3 the base does not render (the head is shown; the gates that need the base did not run).
DIFF_OK, DIFF_REFUSED, DIFF_USAGE, DIFF_BASE_DOES_NOT_RENDER = 0, 1, 2, 3


def _diff(args: argparse.Namespace) -> int:
    name = stack_file(args.stack)[0]
    head = load_stack(args.stack)
    # The base renders in a process of its own (mesh/gitbase.py), started here: the head's plan
    # is built meanwhile, so a user waits for the longer of the two, not for both. No thread:
    # one would compete with the head's plan for the GIL (see `gitbase.RunningRender`).
    with PendingBase(args.base, name) as pending:
        plan = build_plan(head.config)
        planned = plan.objects()  # built once: checked, masked, compared
        head_objects = normalized(masked(planned, head.secrets))
        head_charts = normalized(masked([c.as_object() for c in plan.charts()], head.secrets))
        if pending.error is None:  # else result() raises it: nothing more to do
            # The head's side and checks need of the base only its pack config, read from
            # its exported tree: they are done while it renders.
            after = side(
                head_objects, head.config, head.raw, pack=read_pack_config(), charts=head_charts
            )
            # Checked with the stricter of the base's and the head's policy pack config.
            policy = stricter_pack(pending.pack_config, pending.pack_error, after.pack)
            # With the charts' objects, as the program checks them.
            head_findings = check(head.config, plan.cluster_objects(), policy)
        # What follows builds and keeps both sides' objects, routing and journeys, and frees
        # almost nothing: collections would only rescan them (see `gitbase.paused_collector`).
        with paused_collector():
            try:
                base = pending.result()
            except GitBaseError as exc:
                problem = f"ml-mesh: diff of stack '{name}' against {args.base}: {exc}"
                print(problem, file=sys.stderr)
                return DIFF_USAGE
            label = f"base `{args.base}` ({base.commit[:12]})"
            if not base.exists:
                label += ", where the stack does not exist yet"
            before = side(
                base.objects,
                base.config,
                base.raw,
                base.exists,
                base.pack_config,
                base.pack_error,
                base.charts,
            )
            markdown, refusals = report(
                name,
                label,
                before,
                after,
                set(args.allow),
                head_findings=head_findings,
                base_error=base.error,
            )
    sys.stdout.write(markdown)
    if base.error is not None:
        first = _headline(base.error)
        print(
            f"ml-mesh: diff of stack '{name}': the base {args.base} does not render ({first}); "
            "only the head is shown and the gates that compare with the base did not run",
            file=sys.stderr,
        )
    for refusal in refusals:
        print(f"ml-mesh: refused ({refusal.gate}): {refusal.reason}", file=sys.stderr)
    if refusals:
        return DIFF_REFUSED
    return DIFF_OK if base.error is None else DIFF_BASE_DOES_NOT_RENDER


def _stacks(args: argparse.Namespace) -> int:
    found = find_stacks()
    if args.github_output:
        # `name=value` lines for $GITHUB_OUTPUT: the matrices, and whether each has a stack
        # (a job over an empty matrix fails, so the workflow skips it instead).
        for name, matrix in matrices(found).items():
            print(f"{name}={json.dumps(matrix, separators=(',', ':'))}")
            print(f"has-{name}={'true' if matrix['include'] else 'false'}")
    elif args.json:
        print(json.dumps([s.to_json() for s in found], indent=2))
    else:
        for stack in found:
            kind = "protected" if stack.protected else "unprotected"
            print(f"{stack.name}\t{kind}\t{stack.kubeconfig_secret}")
    return 0


def _headline(error: str) -> str:
    """The line of a base's error output that says what is wrong: ml-mesh's own first message
    (`ml-mesh: ...`, or `file:line:column: ...` of a YAML error, whose source line and caret
    follow), else the last line (a traceback's exception); the report quotes it whole."""
    lines = [line for line in error.splitlines() if line.strip()]
    if not lines:
        return "no error output"
    said = [line for line in lines if line.startswith("ml-mesh:") or _YAML_MARK.match(line)]
    first = said[0] if said else lines[-1]
    more = len(said) - 1
    return first + (f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else "")


_YAML_MARK = re.compile(r"^\S+:\d+:\d+: ")


DEFAULT_GATEWAY = "istio-system/istio-ingressgateway-service-account"
DEFAULT_GATEWAY_LABELS = (("app", "istio-ingressgateway"), ("istio", "ingressgateway"))


class TraceInputError(Exception):
    """A `trace` argument that names nothing traceable; exit 2 with this message."""


def _extra_objects(paths: list[str]) -> list[dict]:
    try:
        return load_files(paths)
    except (OSError, yaml.YAMLError) as exc:
        raise TraceInputError(f"--with: cannot read objects: {exc}") from None


def _trace(args: argparse.Namespace) -> int:
    if args.request is not None:
        return _trace_question(args)
    stack = load_stack(args.stack or DEFAULT_STACK)
    found = journeys(stack.config, _extra_objects(args.with_))
    failed = [j for j in found if not j.passed]
    if args.json:
        print(json.dumps({"stack": stack.name, "journeys": to_json(found)}, indent=2))
    else:
        print(f"# stack {stack.name}: what each client and pod reaches (Istio 1.30 semantics)")
        print(table(found, verbose=args.verbose))
        promised = sum(j.expect is not None for j in found)
        print(
            f"# stack {stack.name}: {len(found)} journeys, {promised} promised, "
            f"{len(failed)} failed"
        )
    for journey in failed:
        print(
            f"ml-mesh: stack '{stack.name}': journey failed: {journey.model}: {journey.problem()}",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TraceInputError(f"--labels: {item!r} is not key=value")
        pairs.append((key, value))
    return tuple(sorted(pairs))


def _request(args: argparse.Namespace) -> Request:
    """`--request URL`: http, https, grpc (h2c), grpcs, tls or tcp://host[:port][/path]."""
    scheme, sep, rest = args.request.partition("://")
    defaults = {"http": 80, "https": 443, "grpc": 80, "grpcs": 443, "tls": 443, "tcp": None}
    if not sep or scheme not in defaults:
        raise TraceInputError(
            f"--request {args.request!r}: give a URL with one of the schemes "
            f"{', '.join(defaults)}, e.g. https://sentiment.models.example.com/v1/models/x"
        )
    authority, slash, path = rest.partition("/")
    host, colon, port = authority.rpartition(":") if ":" in authority else (authority, "", "")
    if colon and not port.isdigit():
        raise TraceInputError(f"--request: port {port!r} is not a number")
    number = int(port) if colon else defaults[scheme]
    if number is None:
        raise TraceInputError("--request: tcp:// needs a port")
    protocol = {"grpc": "grpc", "grpcs": "grpc", "tcp": "tcp", "tls": "tcp"}.get(scheme, "http")
    headers = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep:
            raise TraceInputError(f"-H {header!r}: give 'name: value'")
        headers.append((name.strip().lower(), value.strip()))
    return Request(
        port=number,
        host=host,
        protocol=protocol,  # type: ignore[arg-type]
        tls=scheme in ("https", "grpcs", "tls"),
        method="POST" if protocol == "grpc" else args.method,
        path=slash + path if slash else "/",
        headers=tuple(headers),
    )


def _trace_question(args: argparse.Namespace) -> int:
    # --with alone traces those objects only; otherwise the stack's (dev unless named) too.
    stack = args.stack or (None if args.with_ else DEFAULT_STACK)
    config = load_stack(stack).config if stack is not None else None
    if config is not None:
        objects = stack_objects(config, _extra_objects(args.with_))
    else:
        objects = Objects(expand(_extra_objects(args.with_)))
    request = _request(args)
    if args.source is None and config is not None:
        result = trace(objects, gateway_workload(config, objects), request)
        print(json.dumps(result.to_json(), indent=2) if args.json else _answer(result))
        return 0 if result.ok else 1
    kind, sep, where = (args.source or f"gateway:{DEFAULT_GATEWAY}").partition(":")
    parts = where.split("/")
    if kind == "container":
        if len(parts) != 3:
            raise TraceInputError("--from container:NAMESPACE/WORKLOAD/CONTAINER")
        pod = objects.pod(f"{parts[0]}/{parts[1]}")
        if pod is None:
            raise TraceInputError(f"--from: no workload {parts[0]}/{parts[1]} in the objects")
        names = [c.get("name") for c in (*pod.init_containers(), *pod.containers())]
        if parts[2] not in (*names, "istio-proxy"):
            raise TraceInputError(
                f"--from: {pod.workload} has no container {parts[2]!r}; "
                f"containers: {', '.join(map(str, names))}, istio-proxy"
            )
        result = trace_process(objects, pod, parts[2], request)
    elif kind in ("gateway", "pod") and sep and len(parts) == 2 and all(parts):
        source = Workload(
            namespace=parts[0],
            service_account=parts[1],
            labels=_labels(args.labels) or (DEFAULT_GATEWAY_LABELS if kind == "gateway" else ()),
            sidecar="none" if args.sidecar == "none" else args.sidecar,
            gateway=kind == "gateway",
            # a Gateway API Gateway's pods: named after their Gateway
            name=dict(_labels(args.labels)).get("gateway.networking.k8s.io/gateway-name", ""),
        )
        result = trace(objects, source, request)
    else:
        raise TraceInputError(
            f"--from {args.source!r}: give gateway:NAMESPACE/SERVICEACCOUNT (with --labels of "
            "the gateway pods), pod:NAMESPACE/SERVICEACCOUNT, or "
            "container:NAMESPACE/WORKLOAD/CONTAINER"
        )
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(_answer(result))
    return 0 if result.ok else 1


def _answer(result: Trace) -> str:
    lines = [f"{result.source.describe()} → {result.request.describe()}"]
    lines += [f"  {s.at}: {s.detail}" for s in result.steps]
    for branch in result.branches:
        lines.append(
            f"  {branch.kind} {round(branch.share, 2):g}%: {branch.cluster or branch.workload}"
        )
        lines += [f"    {s.at}: {s.detail}" for s in branch.steps]
        status = f" ({branch.outcome.status})" if branch.outcome.status else ""
        lines.append(f"    => {branch.outcome.verdict}{status}: {branch.outcome.detail}")
    if not result.branches:
        status = f" ({result.outcome.status})" if result.outcome.status else ""
        lines.append(f"  => {result.outcome.verdict}{status}: {result.outcome.detail}")
    return "\n".join(lines)


def _yaml_document(path: Path) -> object:
    """A stack file's document, read as every stack file is (see mesh.stackfile)."""
    return read_stack_document(path, stack_file(str(path))[0])


def _stack_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "stack",
        nargs="?",
        default=DEFAULT_STACK,
        help="stack name (reads Pulumi.<stack>.yaml of the project, from any directory) or "
        f"path to a stack file, relative to the current directory (default: {DEFAULT_STACK})",
    )


def _program_name() -> str:
    """`ml-mesh` when run as the installed command, else `python -m mesh`, for usage lines."""
    return "ml-mesh" if Path(sys.argv[0]).name == "ml-mesh" else "python -m mesh"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog=_program_name(), description=__doc__)
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
    render.add_argument(
        "-o",
        "--format",
        choices=("yaml", "json"),
        default="yaml",
        help="yaml (default): multi-document YAML; json: one JSON list of the same objects "
        "(what `mesh diff` reads from the base, parsed several times faster than YAML)",
    )
    render.add_argument(
        "--charts",
        action="store_true",
        help="print each Helm release as an object {apiVersion: helm.sh/v4, kind: Chart, "
        "metadata: {name, namespace}, spec: {chart, version, values}} after the stack's "
        "objects, instead of as comments (what `mesh diff` compares; not for kubectl)",
    )
    render.set_defaults(run=_render)
    check_ = commands.add_parser(
        "check",
        help="run the mesh analyzers (istioctl analyze rules) on a stack, offline",
        description="Print every finding of the mesh checks the program runs before `pulumi "
        "preview` registers anything, one line each as `istioctl analyze` prints them "
        "(`Error [IST0101] (VirtualService ml-serving/sentiment models.sentiment.canary.version) "
        "...`: the config key that caused it after the resource): IST codes as istioctl "
        "analyze reports them, MESH codes for ml-mesh's own rules, and on protected stacks "
        "POLICY/<policy> for the rules of the policy pack (policy/rules.py, with the config "
        "policy/config.json). Exit 1 when any finding is an error of the stack's (with --with: "
        "on its own objects or introduced on the cluster's; errors already in the cluster are "
        "reported, not failing), 2 on invalid config or an unreadable snapshot.",
    )
    _stack_argument(check_)
    check_.add_argument(
        "--with",
        dest="with_",
        nargs="+",
        metavar="FILE",
        default=[],
        help="analyse the stack together with a snapshot of the cluster (what kubectl get "
        "... -A -o yaml|json prints: a List, multi-document YAML or JSON; - reads standard "
        "input): the cluster as it will be after `pulumi up`. Secrets are read as metadata "
        "and key names only; no Secret value is ever kept or printed",
    )
    check_.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default="text",
        help="text (default): one line per finding, as istioctl analyze's default (log) "
        "output, then a summary; json, yaml: the findings as istioctl analyze -o json|yaml "
        "prints them (code, level, message, origin, documentationUrl) plus path, attribution "
        "(stack, introduced, cluster) and fails; the summary goes to stderr",
    )
    check_.set_defaults(run=_check)
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of Pulumi.<stack>.yaml (for editor validation)",
        description="Print the JSON Schema of a whole Pulumi.<stack>.yaml, generated from the "
        "stack config models; point your editor's YAML support at it.",
    )
    schema.set_defaults(run=_schema)
    reference = commands.add_parser(
        "reference",
        help="print the config reference (every ml-mesh: key) as Markdown",
        description="Print every key of a stack's `ml-mesh:` config with its type, default, "
        "allowed values and description, generated from the config models (the text of "
        "docs/config-reference.md).",
    )
    reference.set_defaults(run=_reference)
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
    trace_ = commands.add_parser(
        "trace",
        help="follow every journey of a stack (or one request) through the objects, offline",
        description="Simulate, from the objects and Istio 1.30's semantics, what each client "
        "and pod of a stack reaches: ingress (REST, gRPC, HTTPS, redirect, match rules, "
        "mirror), in-mesh callers, and every container's connections (model store, STS, IMDS, "
        "unregistered hosts, Prometheus, probes). Exit 1 when a journey the config promises "
        "fails. With --request, answer one question instead: where does this request from "
        "this source go?",
    )
    trace_.add_argument(
        "stack",
        nargs="?",
        help=f"stack name or path to a stack file (default: {DEFAULT_STACK}; with --request "
        "and --with, only those objects unless a stack is named)",
    )
    trace_.add_argument(
        "--with",
        dest="with_",
        action="append",
        default=[],
        metavar="FILE",
        help="more objects (YAML, e.g. kubectl get ... -o yaml), traced with the stack's",
    )
    trace_.add_argument("-v", "--verbose", action="store_true", help="every step of every journey")
    trace_.add_argument("--json", action="store_true", help="machine-readable output")
    trace_.add_argument(
        "--request",
        metavar="URL",
        help="one request: http|https|grpc|grpcs|tls|tcp://host[:port][/path]",
    )
    trace_.add_argument(
        "--from",
        dest="source",
        help="the source: gateway:NS/SA, pod:NS/SA or container:NS/WORKLOAD/CONTAINER "
        "(default: the stack's ingress gateway; without a stack "
        f"gateway:{DEFAULT_GATEWAY})",
    )
    trace_.add_argument(
        "--labels",
        default="",
        help="labels of the source pod, k=v,... (a gateway's must match the Gateway selector, "
        "or be gateway.networking.k8s.io/gateway-name=NAME for a Gateway API Gateway; "
        "default for the default gateway: istio=ingressgateway)",
    )
    trace_.add_argument(
        "--sidecar",
        choices=("classic", "native", "none", "ambient"),
        default="classic",
        help="the source pod's sidecar, or ambient (captured by ztunnel) (default: classic)",
    )
    trace_.add_argument("-X", "--method", default="GET", help="HTTP method (default GET)")
    trace_.add_argument(
        "-H", "--header", action="append", default=[], help="a request header, 'name: value'"
    )
    trace_.set_defaults(run=_trace)
    diff = commands.add_parser(
        "diff",
        help="Markdown report of what a change does to a stack; non-zero exit on unsafe changes",
        description="Render the stack at a git ref (with that ref's code) and in the working "
        "tree and print, as Markdown for a pull request, the traffic before and after, the "
        "objects added, removed and changed, and the routing after the change. Exits 1 when a "
        "gate refuses the change ("
        + "; ".join(f"{gate}: {why}" for gate, why in GATES.items())
        + ") or the head fails mesh checks (not overridable), 2 on bad config or an unknown "
        "ref, 3 when the base does not render (the head is shown, the gates that need the "
        "base's objects did not run).",
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
    stacks = commands.add_parser(
        "stacks",
        help="list the project's stacks (Pulumi.*.yaml): protected or not, credentials secret",
        description="List every Pulumi.<stack>.yaml of the project: its name, whether it is "
        "protected, and the GitHub secret its cluster credentials are read from "
        f"({KUBECONFIG_PREFIX}<STACK>, upper-cased, other characters as _). The workflows build "
        "their matrices from it.",
    )
    output = stacks.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="a JSON list")
    output.add_argument(
        "--github-output",
        action="store_true",
        help="the matrices all/protected/unprotected as name=JSON lines for $GITHUB_OUTPUT",
    )
    stacks.set_defaults(run=_stacks)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except TraceInputError as exc:
        print(f"ml-mesh: trace: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, MeshCheckError) as exc:
        print(exc, file=sys.stderr)
        return 2
    except SnapshotError as exc:
        for problem in exc.problems:
            print(f"ml-mesh: check --with: {problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left early (`python -m mesh render | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
