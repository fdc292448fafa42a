"""How `mesh check` prints its findings: as `istioctl analyze` does, plus what ml-mesh knows.

Istio 1.30's `istioctl analyze` prints one line per message (istioctl/pkg/util/formatting/
formatter.go, `render`; pkg/config/analysis/diag/message.go, `Message.String` and `Origin`):

    Error [IST0101] (VirtualService ml-serving/sentiment) Referenced host not found: ...

the level capitalised, the code in brackets, the resource in parentheses followed by its source
reference where one is known (`vs.yaml:12` for a file), then the message. ml-mesh's source of
every stack object is a key of the stack config, so that key takes the reference's place:
`(VirtualService ml-serving/sentiment models.sentiment.canary.version)`: it is what the user
edits. With `--with`, a finding on an object of the cluster carries a mark where istioctl puts
a multi-cluster run's `[cluster-<name>]`: `[introduced by stack]` (the stack breaks that object:
it fails the run) or `[already in cluster]` (found in the snapshot alone: reported only).

`-o json` and `-o yaml` print what istioctl prints for them (`Message.Unstructured(true)`
through encoding/json's `MarshalIndent(ms, "", "\\t")` or sigs.k8s.io/yaml, keys sorted as Go
sorts a map's): `code`, `level`, `message`, `origin` (istioctl's name for the resource),
`documentationUrl` for Istio's codes, and ml-mesh's own: `path` (the config key, where one
caused the finding), `attribution` (`stack`, `introduced` or `cluster`: whose problem it is;
not `origin`, which istioctl already uses for the resource) and `fails` (whether it fails the
run). Istio's documentation has pages for IST codes only, so MESH and POLICY codes have no
`documentationUrl`.

Messages are deduplicated as istioctl does (`Messages.SortedDedupedCopy`: two messages with the
same text are one) and keep the order `check()` gives them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import yaml

from mesh.checks.findings import SEVERITIES, Finding

Format = Literal["text", "json", "yaml"]
FORMATS: tuple[Format, ...] = ("text", "json", "yaml")
ISTIO_DOCS_VERSION = "v1.30"  # the Istio release ml-mesh's rules follow (../shared/istio)
# pkg/url/url.go: ConfigAnalysis = BaseURL + DocsVersion + "/docs/reference/config/analysis"
CONFIG_ANALYSIS_URL = f"https://istio.io/{ISTIO_DOCS_VERSION}/docs/reference/config/analysis"
MARKS = {"stack": "", "introduced": "[introduced by stack] ", "cluster": "[already in cluster] "}


def level(finding: Finding) -> str:
    """Istio's level name (diag/level.go): `Error`, `Warning`, `Info`."""
    return finding.severity.capitalize()


def documentation_url(code: str) -> str | None:
    """istio.io's page for an IST code (diag/message.go, `Unstructured`); None for ml-mesh's."""
    if not code.startswith("IST"):
        return None
    return f"{CONFIG_ANALYSIS_URL}/{code.lower()}/"


def line(finding: Finding) -> str:
    """One finding as `istioctl analyze` prints a message, the config key as its reference."""
    reference = f" {finding.path}" if finding.path else ""
    mark = MARKS[finding.origin]
    return (
        f"{level(finding)} [{finding.code}] {mark}({finding.resource}{reference}) {finding.message}"
    )


def unique(findings: Iterable[Finding]) -> list[Finding]:
    """The findings in their order, each printed line once (istioctl's dedupe by String())."""
    seen: set[str] = set()
    kept = []
    for finding in findings:
        text = f"{line(finding)}\0{finding.origin}"
        if text not in seen:
            seen.add(text)
            kept.append(finding)
    return kept


def unstructured(finding: Finding) -> dict[str, Any]:
    """One finding as istioctl's `-o json|yaml` prints a message, with ml-mesh's fields."""
    fields: dict[str, Any] = {
        "code": finding.code,
        "level": level(finding),
        "message": finding.message,
        "origin": finding.resource,
        "attribution": finding.origin,
        "fails": finding.fails,
    }
    url = documentation_url(finding.code)
    if url is not None:
        fields["documentationUrl"] = url
    if finding.path:
        fields["path"] = finding.path
    return dict(sorted(fields.items()))


def _counts(findings: Sequence[Finding]) -> str:
    counts = {s: sum(f.severity == s for f in findings) for s in SEVERITIES}
    return ", ".join(f"{n} {s}{'s' if n != 1 and s != 'info' else ''}" for s, n in counts.items())


def summary(stack: str, checked: int, findings: Sequence[Finding], cluster: int | None) -> str:
    """The closing line(s): what was checked, and which findings fail the run.

    Without a snapshot (`cluster` None) the one line `mesh check` always printed. With one, the
    first line counts the stack's findings (on its own objects and those it introduces on the
    cluster's: their errors fail the run) and the second those already in the cluster, which
    are reported but never fail it."""
    if cluster is None:
        return f"# stack {stack}: {checked} objects checked: {_counts(findings)}"
    own = [f for f in findings if f.origin != "cluster"]
    introduced = [f for f in own if f.origin == "introduced"]
    before = [f for f in findings if f.origin == "cluster"]
    return (
        f"# stack {stack}: {checked} objects checked with a snapshot of {cluster} cluster "
        f"object{'s' if cluster != 1 else ''}: {_counts(own)} ({len(introduced)} introduced by the stack on the cluster's "
        "objects): their errors fail the run\n"
        f"# already in the cluster, reported only (never fail the run): {_counts(before)}"
    )


def render(findings: Sequence[Finding], output: Format) -> str:
    """The findings in one of FORMATS, without the summary; '' for no text findings."""
    shown = unique(findings)
    if output == "json":
        return json.dumps([unstructured(f) for f in shown], indent="\t") + "\n"
    if output == "yaml":
        if not shown:
            return "[]\n"
        return yaml.safe_dump(
            [unstructured(f) for f in shown], sort_keys=True, allow_unicode=True, width=1 << 16
        )
    return "".join(line(f) + "\n" for f in shown)
