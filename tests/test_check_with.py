"""`mesh check`'s output (istioctl analyze's text, -o json|yaml) and `--with` from the command
line: findings marked by whose they are, exit codes, unreadable snapshots, Secrets never shown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mesh import cli
from mesh.checks import run as checks_run
from mesh.checks.findings import Finding
from mesh.checks.index import _Index
from mesh.checks.paths import _finding
from mesh.checks.report import line, render, summary, unique, unstructured
from tests.conftest import PROJECT_DIR, run_mesh
from tests.local_apiserver import KUBECTL, SNAPSHOT_RESOURCES, local_api_server, needs_kubectl

# Another team's VirtualService binding the prod stack's mesh host (IST0109 on the stack's own
# VirtualService; its destination names no port of the two-port Service: IST0112, introduced).
CONFLICTING_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: search, namespace: team-b}
spec:
  hosts: [sentiment.ml-serving.svc.cluster.local]
  http:
  - route:
    - destination: {host: sentiment.ml-serving.svc.cluster.local}
"""
# Broken before and after `pulumi up`, whatever the stack: the cluster's own (IST0101).
BROKEN_VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: team-b}
spec:
  hosts: [broken.team-b.svc.cluster.local]
  http:
  - route:
    - destination: {host: nowhere.team-b.svc.cluster.local}
"""
# The ingress gateway as istioctl's default profile installs it: pods and their Service.
GATEWAY_WORKLOAD = """\
apiVersion: v1
kind: Pod
metadata:
  name: istio-ingressgateway-7c9d6b5f4-k2x8p
  namespace: istio-system
  labels: {app: istio-ingressgateway, istio: ingressgateway}
spec:
  containers: [{name: istio-proxy, image: docker.io/istio/proxyv2:1.30.3}]
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
"""
SECRET_VALUES = ("U0VDUkVULUtFWQ==", "SECRET-KEY", "c3RyaW5nLXZhbHVl", "string-value", "hunter2")
SECRET = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: sentiment-tls
  namespace: istio-system
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"data":{{"tls.key":"{SECRET_VALUES[0]}"}},"stringData":{{"password":"{SECRET_VALUES[4]}"}}}}'
type: kubernetes.io/tls
data: {{tls.crt: Q0VSVA==, tls.key: {SECRET_VALUES[0]}}}
stringData: {{password: {SECRET_VALUES[4]}, note: {SECRET_VALUES[3]}}}
"""


def _finding_of(origin: str, path: str | None = None, code: str = "IST0101") -> Finding:
    return Finding(
        "error", code, path, "VirtualService ml-serving/sentiment", "Referenced host", origin
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("finding", "shown"),
    [
        (
            _finding_of("stack", "models.sentiment.canary.version"),
            "Error [IST0101] (VirtualService ml-serving/sentiment "
            "models.sentiment.canary.version) Referenced host",
        ),
        (
            _finding_of("stack"),
            "Error [IST0101] (VirtualService ml-serving/sentiment) Referenced host",
        ),
        (
            _finding_of("introduced"),
            "Error [IST0101] [introduced by stack] (VirtualService ml-serving/sentiment) "
            "Referenced host",
        ),
        (
            _finding_of("cluster"),
            "Error [IST0101] [already in cluster] (VirtualService ml-serving/sentiment) "
            "Referenced host",
        ),
        (
            Finding("warning", "MESH0003", "images.modelFetcher", "Deployment a/b", "pinned"),
            "Warning [MESH0003] (Deployment a/b images.modelFetcher) pinned",
        ),
        (
            Finding("info", "IST0118", None, "Service a/b", "port"),
            "Info [IST0118] (Service a/b) port",
        ),
    ],
)
def test_a_finding_prints_as_istioctl_analyze_prints_a_message(finding, shown):
    """diag/message.go `String`: `Level [CODE] (Kind ns/name reference) message`."""
    assert line(finding) == shown


def test_json_fields_are_istioctls_plus_path_attribution_and_fails():
    fields = unstructured(_finding_of("introduced", "models.sentiment.hosts"))
    assert fields == {
        "attribution": "introduced",
        "code": "IST0101",
        "documentationUrl": "https://istio.io/v1.30/docs/reference/config/analysis/ist0101/",
        "fails": True,
        "level": "Error",
        "message": "Referenced host",
        "origin": "VirtualService ml-serving/sentiment",
        "path": "models.sentiment.hosts",
    }
    assert list(fields) == sorted(fields), "keys sorted, as Go marshals a map"


@pytest.mark.parametrize(
    ("code", "url"),
    [
        ("IST0173", "https://istio.io/v1.30/docs/reference/config/analysis/ist0173/"),
        ("MESH0003", None),
        ("POLICY/canary-weight", None),
    ],
)
def test_only_istio_codes_link_to_istio_docs_and_no_path_means_no_path_field(code, url):
    fields = unstructured(Finding("warning", code, None, "Deployment a/b", "m", "cluster"))
    assert fields.get("documentationUrl") == url
    assert "path" not in fields
    assert fields["fails"] is False


def test_a_cluster_error_does_not_fail_but_an_introduced_one_does():
    assert [unstructured(_finding_of(o))["fails"] for o in ("stack", "introduced", "cluster")] == [
        True,
        True,
        False,
    ]


def test_identical_messages_are_printed_once_as_istioctl_dedupes_them():
    twice = [_finding_of("stack"), _finding_of("stack"), _finding_of("cluster")]
    assert unique(twice) == [_finding_of("stack"), _finding_of("cluster")]
    assert render(twice, "text").count("\n") == 2


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_no_findings_is_an_empty_list(output):
    assert (json.loads if output == "json" else yaml.safe_load)(render([], output)) == []


def test_the_summary_tells_failing_findings_from_the_clusters_own():
    findings = [_finding_of("stack"), _finding_of("introduced"), _finding_of("cluster")]
    assert summary("prod", 30, findings, None) == (
        "# stack prod: 30 objects checked: 3 errors, 0 warnings, 0 info"
    )
    first, second = summary("prod", 30, findings, 1).splitlines()
    assert first == (
        "# stack prod: 30 objects checked with a snapshot of 1 cluster object: 2 errors, "
        "0 warnings, 0 info (1 introduced by the stack on the cluster's objects): their errors "
        "fail the run"
    )
    assert second == (
        "# already in the cluster, reported only (never fail the run): 1 error, 0 warnings, 0 info"
    )


@pytest.fixture
def snapshot(tmp_path: Path):
    def write(*documents: str, name: str = "cluster.yaml") -> str:
        path = tmp_path / name
        path.write_text("---\n".join(documents))
        return str(path)

    return write


def test_check_with_marks_introduced_and_cluster_findings_and_fails_on_the_stacks(snapshot):
    result = run_mesh("check", "prod", "--with", snapshot(CONFLICTING_VS, BROKEN_VS))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert any(
        x.startswith("Error [IST0109] (VirtualService ml-serving/sentiment models.sentiment.")
        for x in lines
    ), lines
    assert any(
        x.startswith("Error [IST0112] [introduced by stack] (VirtualService team-b/search)")
        for x in lines
    ), lines
    assert any(
        x.startswith("Error [IST0101] [already in cluster] (VirtualService team-b/broken)")
        for x in lines
    ), lines
    assert lines[-2].startswith("# stack prod: 30 objects checked with a snapshot of 2 cluster")
    assert lines[-1].startswith("# already in the cluster, reported only (never fail the run): 1")
    assert result.stderr == ""


def test_errors_already_in_the_cluster_alone_do_not_fail_the_run(snapshot):
    result = run_mesh("check", "dev", "--with", snapshot(BROKEN_VS, GATEWAY_WORKLOAD))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Error [IST0101] [already in cluster] (VirtualService team-b/broken)" in result.stdout


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_machine_readable_output_is_the_findings_alone_the_summary_on_stderr(snapshot, output):
    result = run_mesh("check", "prod", "--with", snapshot(CONFLICTING_VS, BROKEN_VS), "-o", output)
    assert result.returncode == 1
    messages = (json.loads if output == "json" else yaml.safe_load)(result.stdout)
    by_code = {(m["code"], m["origin"]): m for m in messages}
    introduced = by_code["IST0112", "VirtualService team-b/search"]
    assert (introduced["attribution"], introduced["fails"], introduced["level"]) == (
        "introduced",
        True,
        "Error",
    )
    assert "path" not in introduced
    own = by_code["IST0109", "VirtualService ml-serving/sentiment"]
    assert (own["attribution"], own["path"]) == ("stack", "models.sentiment.hosts")
    cluster = by_code["IST0101", "VirtualService team-b/broken"]
    assert (cluster["attribution"], cluster["fails"]) == ("cluster", False)
    assert all(
        m["documentationUrl"].endswith(f"/{m['code'].lower()}/")
        for m in messages
        if m["code"].startswith("IST")
    )
    assert result.stderr.startswith("# stack prod: 30 objects checked with a snapshot of 2")


def test_check_without_a_snapshot_prints_the_same_format_and_one_summary_line():
    result = run_mesh("check", "prod")
    assert result.returncode == 0, result.stdout
    *findings, last = result.stdout.splitlines()
    assert findings and all(
        f.startswith("Warning [MESH0003] (Deployment ml-serving/") for f in findings
    )
    assert last == "# stack prod: 30 objects checked: 0 errors, 5 warnings, 0 info"


def test_check_reads_the_snapshot_from_stdin_with_a_dash():
    result = subprocess.run(
        [sys.executable, "-m", "mesh", "check", "dev", "--with", "-", "-o", "json"],
        cwd=PROJECT_DIR,
        input=BROKEN_VS + "---\n" + GATEWAY_WORKLOAD,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (message,) = json.loads(result.stdout)
    assert (message["origin"], message["attribution"]) == (
        "VirtualService team-b/broken",
        "cluster",
    )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.yaml", "items: [a, b\n", r"bad.yaml:2:1: "),
        ("bad.json", '{"kind": "List",\n "items": [}\n', "bad.json:2:12: Expecting value"),
        (
            "scalar.yaml",
            "just text\n",
            "scalar.yaml: document 1: is a string, not a Kubernetes object",
        ),
        (
            "nokind.yaml",
            "apiVersion: v1\nmetadata: {name: x}\n",
            "nokind.yaml: document 1: not a Kubernetes object (no kind)",
        ),
        ("binary.yaml", b"\xff\xfe\x00", "binary.yaml: is not text"),
    ],
)
def test_an_unreadable_snapshot_is_one_line_exit_2_no_traceback(tmp_path, name, text, expected):
    path = tmp_path / name
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    result = run_mesh("check", "dev", "--with", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    (problem,) = result.stderr.splitlines()
    assert problem.startswith(f"ml-mesh: check --with: {tmp_path}/")
    assert expected in problem, problem
    assert "Traceback" not in result.stderr


def test_every_unreadable_file_is_named_at_once(tmp_path):
    (tmp_path / "bad.yaml").write_text("[\n")
    result = run_mesh(
        "check", "dev", "--with", str(tmp_path / "missing.yaml"), str(tmp_path / "bad.yaml")
    )
    assert result.returncode == 2
    problems = result.stderr.splitlines()
    assert len(problems) == 2, problems
    assert problems[0] == (
        f"ml-mesh: check --with: {tmp_path}/missing.yaml: cannot be read: No such file or directory"
    )
    assert problems[1].startswith(f"ml-mesh: check --with: {tmp_path}/bad.yaml:2:1: ")


def _secret_tattler(index: _Index) -> Iterator[Finding]:
    """The worst rule imaginable: it writes every Secret it is given, whole, into a finding."""
    for obj in index.by_kind["Secret"]:
        yield _finding(index, obj, "IST0101", "error", None, json.dumps(obj))


@pytest.mark.parametrize("output", ["text", "json", "yaml"])
def test_no_secret_value_reaches_the_output_even_from_a_finding_on_the_secret(
    snapshot, monkeypatch, capsys, output
):
    """data, stringData and the last-applied-configuration annotation never leave the loader."""
    monkeypatch.setattr(checks_run, "ISTIO_RULES", (*checks_run.ISTIO_RULES, _secret_tattler))
    status = cli.main(["check", "dev", "--with", snapshot(SECRET, GATEWAY_WORKLOAD), "-o", output])
    captured = capsys.readouterr()
    shown = captured.out + captured.err
    assert status == 0  # the Secret's finding is the cluster's own: found before the stack too
    assert "Secret istio-system/sentiment-tls" in shown, "the rule did report on the Secret"
    for value in SECRET_VALUES:
        assert value not in shown
    assert "last-applied-configuration" not in shown
    assert "tls.key" in shown  # key names stay: the credential analyzer needs them


# Taking the snapshot: examples/cluster/ (the read-only roles, the script, the Secret template).

CLUSTER_DIR = PROJECT_DIR / "examples" / "cluster"
SNAPSHOT_SCRIPT = CLUSTER_DIR / "snapshot.sh"
SECRET_TEMPLATE = CLUSTER_DIR / "secret-metadata.tmpl"


def _script_kinds() -> list[tuple[str, str]]:
    """The (group, resource) pairs snapshot.sh passes to `kubectl get`."""
    text = SNAPSHOT_SCRIPT.read_text()
    names = "".join(
        part.split("=", 1)[1] if part.startswith("kinds=") else part.split("+=", 1)[1]
        for part in text.splitlines()
        if part.startswith(("kinds=", "kinds+="))
    )
    return [(n.partition(".")[2], n.partition(".")[0]) for n in names.split(",")]


def _reader_roles() -> dict[str, dict]:
    return {
        d["kind"]: d for d in yaml.safe_load_all((CLUSTER_DIR / "snapshot-reader.yaml").read_text())
    }


def test_the_snapshot_reads_exactly_what_the_read_only_cluster_role_grants():
    granted = sorted(
        (group, resource)
        for rule in _reader_roles()["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    )
    assert sorted(_script_kinds()) == granted
    assert sorted(_script_kinds()) == sorted((g, r) for g, _, r, _, _ in SNAPSHOT_RESOURCES)
    # Every Istio kind is named with its group: `gateways` alone may be Gateway API's.
    assert all(group for group, resource in _script_kinds() if resource == "gateways")


def test_the_roles_only_read_and_secrets_are_listed_in_the_gateway_namespace_only():
    roles = _reader_roles()
    for rule in roles["ClusterRole"]["rules"]:
        assert set(rule["verbs"]) <= {"get", "list"}, rule
        assert "secrets" not in rule["resources"]
    (secrets,) = roles["Role"]["rules"]
    assert (roles["Role"]["metadata"]["namespace"], secrets) == (
        "istio-system",
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},
    )
    subject = {
        "kind": "ServiceAccount",
        "name": "ml-mesh-snapshot",
        "namespace": "ml-mesh-snapshot",
    }
    assert roles["ClusterRoleBinding"]["subjects"] == [subject]
    assert roles["RoleBinding"]["subjects"] == [subject]
    assert roles["RoleBinding"]["roleRef"]["name"] == roles["Role"]["metadata"]["name"]
    assert (
        roles["ClusterRoleBinding"]["roleRef"]["name"] == roles["ClusterRole"]["metadata"]["name"]
    )


def _template_actions() -> list[str]:
    """Every `{{ ... }}` action of the template, comments left out, trim markers removed."""
    text = SECRET_TEMPLATE.read_text()
    actions = [a.strip("-").strip() for a in re.findall(r"\{\{(.*?)\}\}", text, re.DOTALL)]
    return [a for a in actions if not a.startswith("/*")]


def test_the_secret_template_reads_no_value_and_its_actions_are_balanced():
    """Read as Go's text/template parser would (text/template/parse): `if` and `range` each
    closed by an `end`; the only fields read are the names, the namespace, the type and the
    items and data maps, whose values are never printed ($value is bound, never used; no
    `index`, no `base64decode`, no `.data.<key>`)."""
    actions = _template_actions()
    depth = 0
    for action in actions:
        depth += action.split()[0] in ("if", "range")
        depth -= action == "end"
        assert depth >= 0, actions
    assert depth == 0
    fields = sorted({f for a in actions for f in re.findall(r"(?<![\w$])\.[\w.]+", a)})
    assert fields == [".data", ".items", ".metadata.name", ".metadata.namespace", ".type"]
    assert not [a for a in actions if "$value" in a and not a.startswith("range")]
    assert not [a for a in actions if re.search(r"\b(index|base64decode|toJson|json)\b", a)]


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[tuple[dict[str, list[dict]], dict[str, str]]]:
    with local_api_server(tmp_path) as served:
        yield served


def _snapshot_sh(env: dict[str, str], *namespaces: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SNAPSHOT_SCRIPT), *namespaces],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@needs_kubectl
def test_kubectl_prints_secrets_through_the_template_as_names_and_key_names_only(api_server):
    store, env = api_server
    store["secrets"] = [
        {
            "metadata": {
                "name": "models-example-com-tls",
                "namespace": "istio-system",
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": SECRET_VALUES[4]
                },
            },
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Q0VSVA==", "tls.key": SECRET_VALUES[0]},
        },
        {"metadata": {"name": "empty", "namespace": "istio-system"}, "type": "Opaque"},
        {
            "metadata": {"name": "elsewhere", "namespace": "team-b"},
            "type": "Opaque",
            "data": {"k": "dg=="},
        },
    ]
    result = subprocess.run(
        [
            KUBECTL,
            "get",
            "secrets",
            "-n",
            "istio-system",
            f"--output=go-template-file={SECRET_TEMPLATE}",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for value in (*SECRET_VALUES, "Q0VSVA==", "last-applied"):
        assert value not in result.stdout
    (document,) = yaml.safe_load_all(result.stdout)
    assert document == {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "models-example-com-tls", "namespace": "istio-system"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "", "tls.key": ""},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "empty", "namespace": "istio-system"},
                "type": "Opaque",
                "data": {},
            },
        ],
    }


@needs_kubectl
def test_the_snapshot_script_output_is_what_check_with_reads(api_server, tmp_path):
    """examples/cluster/snapshot.sh against a cluster holding another team's VirtualService:
    `mesh check prod --with` reads its output and reports the conflict."""
    store, env = api_server
    conflicting = yaml.safe_load(CONFLICTING_VS)
    store["virtualservices"] = [conflicting]  # custom resources' items keep their kind
    store["namespaces"] = [{"metadata": {"name": "team-b"}}]
    result = _snapshot_sh(env)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "cluster.yaml"
    path.write_text(result.stdout)
    checked = run_mesh("check", "prod", "--with", str(path))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "Error [IST0109] (VirtualService ml-serving/sentiment models.sentiment.hosts)" in (
        checked.stdout
    )
    # the VS, the namespace and the marker that istio-system's Secrets (none) were listed
    assert "with a snapshot of 3 cluster objects" in checked.stdout


@needs_kubectl
def test_the_snapshot_script_reads_the_secrets_of_each_gateway_namespace_given(api_server):
    store, env = api_server
    store["secrets"] = [
        {"metadata": {"name": n, "namespace": n}, "type": "Opaque", "data": {"k": "dg=="}}
        for n in ("istio-system", "public-ingress", "team-b")
    ]
    names = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for d in yaml.safe_load_all(_snapshot_sh(env, "public-ingress", "team-b").stdout)
        for o in d.get("items", [])
        if o["kind"] == "Secret"
    }
    assert names == {("public-ingress", "public-ingress"), ("team-b", "team-b")}
    listed = {
        d["metadata"]["name"]
        for d in yaml.safe_load_all(_snapshot_sh(env, "public-ingress", "team-b").stdout)
        if d["kind"] == "SecretsListed"
    }
    assert listed == {"public-ingress", "team-b"}  # so a Secret missing there is missing
    default = _snapshot_sh(env).stdout
    assert 'name: "istio-system"' in default and "public-ingress" not in default


def test_the_readmes_one_line_snapshot_is_the_script_with_the_gateway_namespace():
    """The README's command takes the snapshot with the script (whose kinds the roles grant,
    pinned above) and checks prod with it."""
    readme = (PROJECT_DIR / "README.md").read_text()
    (command,) = [x for x in readme.splitlines() if x.startswith("examples/cluster/snapshot.sh")]
    assert command.split("#")[0].split() == [
        "examples/cluster/snapshot.sh",
        "istio-system",
        ">cluster.yaml",
    ]
    assert "python -m mesh check prod --with cluster.yaml" in readme
