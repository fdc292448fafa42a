"""Offline render: the objects a stack would create, as multi-document YAML (like
`helm template`), plus a short traffic table for humans."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

import yaml

from mesh.charts import HelmChart
from mesh.config import SECRET_PLACEHOLDER, Model, StackConfig
from mesh.plan import build_plan
from mesh.secrets import replace_secrets

STR, MAP, SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
BOOL, INT, NULL = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:null"
WIDTH = 100


def _plain_resolver(resolve: Callable[[type, Any, Any], str]) -> Callable[[type, Any, Any], str]:
    """`resolve` (PyYAML's `BaseResolver.resolve`) for a dumper without path resolvers, where
    the answer depends on the node kind and the string alone: the tag a plain scalar would
    read back as, looked up once per distinct string (the serializer asks twice for every
    scalar, and a plan repeats the same keys and values thousands of times); for a quoted
    scalar (`implicit[0]` false) `DEFAULT_SCALAR_TAG`, for a sequence or mapping its default
    tag, exactly what `BaseResolver.resolve` returns there."""
    tags: dict[str, str] = {}
    known = tags.get
    scalar, sequence = yaml.ScalarNode, yaml.SequenceNode

    def plain(kind: type, value: Any, implicit: Any) -> str:
        if kind is scalar:
            if not implicit[0]:
                return STR
            tag = known(value)
            if tag is None:
                tag = tags[value] = resolve(kind, value, implicit)
            return tag
        return SEQ if kind is sequence else MAP

    return plain


class _Representer:
    """Block style, no YAML anchors/aliases for repeated sub-objects, and multi-line strings (the
    dashboard JSON) as literal blocks, readable line by line.

    `represent_data` builds the same node tree as PyYAML's `SafeRepresenter` with
    `default_flow_style=False` and `sort_keys=False` (`yaml/representer.py`: `represent_str`,
    `represent_bool`, `represent_int`, `represent_none`, `represent_mapping`,
    `represent_sequence`), for the plain types a plan is made of, without its per-node alias
    bookkeeping and type dispatch: with the C emitter, that bookkeeping was most of the time
    left. Any other type (floats, subclasses) goes through PyYAML's own dispatch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._build = _node_builder(super().represent_data)  # type: ignore[misc]
        if not self.yaml_path_resolvers:  # none are registered: see `_plain_resolver`
            self.resolve = _plain_resolver(super().resolve)  # type: ignore[method-assign]
            # descend_resolver(parent, index) and ascend_resolver() only track the path for
            # path resolvers and return nothing used (yaml/resolver.py: they return at once
            # when there are none). The serializer calls both for every node; any builtin
            # that takes as many arguments and has no effect does the same work in C without
            # two Python frames per node.
            self.descend_resolver = operator.is_  # type: ignore[method-assign]
            self.ascend_resolver = tuple  # type: ignore[method-assign]

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_data(self, data: Any) -> yaml.Node:
        return self._build(data)


def _node_builder(other: Callable[[Any], yaml.Node]) -> Callable[[Any], yaml.Node]:
    """`_Representer.represent_data` as one closure: a plan has about 120 nodes per object, and
    a recursive local function with the node classes at hand, string keys built in place and
    the node constructors called positionally (`yaml/nodes.py`: tag, value, start_mark,
    end_mark, style / flow_style) saves a third of the time a method per node takes. `other`:
    PyYAML's own dispatch, for any other type."""
    scalar, mapping, sequence = yaml.ScalarNode, yaml.MappingNode, yaml.SequenceNode

    def build(data: Any) -> yaml.Node:
        kind = type(data)
        if kind is str:
            return scalar(STR, data, None, None, "|" if "\n" in data else None)
        if kind is dict:
            pairs = [
                (
                    scalar(STR, k, None, None, "|" if "\n" in k else None)
                    if type(k) is str
                    else build(k),
                    build(v),
                )
                for k, v in data.items()
            ]
            return mapping(MAP, pairs, None, None, False)
        if kind is list:
            return sequence(SEQ, [build(i) for i in data], None, None, False)
        if kind is bool:
            return scalar(BOOL, "true" if data else "false")
        if kind is int:
            return scalar(INT, str(data))
        if data is None:
            return scalar(NULL, "null")
        return other(data)

    return build


class PyDumper(_Representer, yaml.SafeDumper):
    """The pure-Python emitter, for a PyYAML built without libyaml. It writes what libyaml
    writes (see `write_double_quoted`), so output does not depend on how PyYAML was built."""

    def check_simple_key(self) -> bool:
        """Whether a key is written inline (`key: value`) or as `? key`, as libyaml decides
        (`yaml_emitter_check_simple_key` in `src/emitter.c`): a one-line scalar (the empty
        string too) or an empty collection, at most 128 bytes of UTF-8 with its anchor and any
        tag that is written. PyYAML counts characters plus the implicit `!!str` tag, refuses
        the empty string, and stops at 127, so keys of 123 to 128 characters, non-ASCII keys
        and `''` came out differently."""
        event = self.event
        length = len(event.anchor or "") if isinstance(event, yaml.NodeEvent) else 0
        if isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)) and event.tag:
            implicit = event.implicit
            if self.canonical or not (implicit if isinstance(implicit, bool) else any(implicit)):
                if self.prepared_tag is None:
                    self.prepared_tag = self.prepare_tag(event.tag)
                length += len(self.prepared_tag)
        if isinstance(event, yaml.ScalarEvent):
            if self.analysis is None:
                self.analysis = self.analyze_scalar(event.value)
            if self.analysis.multiline:
                return False
            length += len(event.value.encode("utf-8"))
        elif isinstance(event, yaml.SequenceStartEvent):
            if not self.check_empty_sequence():
                return False
        elif isinstance(event, yaml.MappingStartEvent):
            if not self.check_empty_mapping():
                return False
        elif not isinstance(event, yaml.AliasEvent):
            return False
        return length <= 128

    def write_double_quoted(self, text: str, split: bool = True) -> None:
        """A double-quoted scalar, folded as libyaml folds it.

        PyYAML breaks a long line before it passes the width and escapes the space it breaks
        at (`\\` newline `\\ `); libyaml (`yaml_emitter_write_double_quoted` in
        `src/emitter.c`) breaks at the first single space past the width (not the first or
        last character) and drops it, since a line break folds to a space when read back, and
        escapes a following space with `\\`. Both read back as the same string; this is
        libyaml's way, character for character. Escapes are PyYAML's, which are libyaml's
        (`\\xXX`, `\\uXXXX`, `\\UXXXXXXXX`, the named ones; no allow_unicode here)."""
        self.write_indicator('"', True)
        out: list[str] = []
        column = self.column
        spaces = False
        last = len(text) - 1
        for index, ch in enumerate(text):
            if ch in '"\\\x85\u2028\u2029\ufeff' or not "\x20" <= ch <= "\x7e":
                if ch in self.ESCAPE_REPLACEMENTS:
                    data = "\\" + self.ESCAPE_REPLACEMENTS[ch]
                else:
                    code = ord(ch)
                    size, letter = (
                        (2, "x") if code <= 0xFF else (4, "u") if code <= 0xFFFF else (8, "U")
                    )
                    data = f"\\{letter}{code:0{size}X}"
                out.append(data)
                column += len(data)
                spaces = False
            elif ch == " ":
                if split and not spaces and column > self.best_width and 0 < index < last:
                    self.stream.write("".join(out))
                    out = []
                    self.column = column
                    self.write_indent()
                    column = self.column
                    if text[index + 1] == " ":
                        out.append("\\")
                        column += 1
                else:
                    out.append(ch)
                    column += 1
                spaces = True
            else:
                out.append(ch)
                column += 1
                spaces = False
        self.stream.write("".join(out))
        self.column = column
        self.write_indicator('"', False)


CDumper: type | None = None
if getattr(yaml, "__with_libyaml__", False):

    class CDumper(_Representer, yaml.CSafeDumper):  # type: ignore[no-redef]
        """libyaml's emitter (PyYAML's wheels ship it): the same output, several times faster."""


def to_yaml(objects: list[dict], dumper: type | None = None) -> str:
    """Multi-document YAML of `objects`, with libyaml when PyYAML has it."""
    return yaml.dump_all(
        objects,
        Dumper=dumper or CDumper or PyDumper,
        sort_keys=False,
        default_flow_style=False,
        width=WIDTH,
    )


def chart_comment(chart: HelmChart) -> str:
    """A Helm release (mesh.charts) as YAML comments: what render shows in place of the
    chart's objects, which exist only once Pulumi renders the chart at `pulumi up`. The
    output stays a stream of objects to apply as it is."""
    lines = [
        f"# Helm release {chart.namespace}/{chart.name}: {chart.chart} {chart.version}",
        "# (Pulumi kubernetes:helm.sh/v4:Chart, which renders the chart's objects at pulumi up)",
    ]
    if chart.modelled:
        made = ", ".join(f"{o['kind']} {o['metadata']['name']}" for o in chart.modelled)
        lines.append(f"# creates, among others: {made}")
    if chart.source:
        lines.append(f"# (as modelled from {chart.source})")
    lines.append("# values:")
    lines.extend(f"#   {line}" for line in to_yaml([chart.values]).splitlines())
    return "\n".join(lines) + "\n"


def to_json_documents(objects: list[dict]) -> str:
    """The objects as one JSON list (a line per object), the same data as `to_yaml`: render
    quotes every string YAML would read as something else, so both read back equal
    (tests/test_render.py pins it for every shipped stack). `mesh diff` reads the base this
    way: `json.loads` is many times faster than any YAML parser on a large stack."""
    if not objects:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(obj, separators=(",", ":")) for obj in objects) + "\n]\n"


def masked(objects: list[dict], secrets: set[str]) -> list[dict]:
    """Copies of `objects` with every secret value masked (the objects themselves unchanged)."""
    mask = lambda _: SECRET_PLACEHOLDER  # noqa: E731
    return [replace_secrets(obj, secrets, mask) for obj in objects]


def render_objects(config: StackConfig, secrets: set[str]) -> list[dict]:
    """What the stack creates, with every secret value masked."""
    return masked(build_plan(config).objects(), secrets)


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
