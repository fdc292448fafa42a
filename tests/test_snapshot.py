"""A cluster snapshot for `mesh check --with`: read in every form kubectl prints, Secrets reduced
to metadata on arrival, the stack laid over it, and each finding told apart by whose it is."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from mesh.checks import check
from mesh.checks.kinds import api_group, kind_key, object_key
from mesh.checks.snapshot import SnapshotError, load_snapshot, merge, redact
from mesh.plan import build_plan
from mesh.stackfile import load_stack

VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "search", "namespace": "team-b"},
    "spec": {"hosts": ["search"], "http": [{"route": [{"destination": {"host": "search"}}]}]},
}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "tls",
        "namespace": "istio-system",
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"tls.key":"c2VjcmV0"}}',
            "team": "edge",
        },
        "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:data": {}}}],
    },
    "type": "kubernetes.io/tls",
    "data": {"tls.crt": "Y2VydA==", "tls.key": "c2VjcmV0"},
    "stringData": {"ca.crt": "plain-text-ca"},
}


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "form, text",
    [
        ("a kubectl List", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [VS]})),
        ("multi-document YAML", "---\n" + yaml.safe_dump(VS) + "---\n"),
        ("one JSON object", json.dumps(VS)),
        ("a JSON List", json.dumps({"apiVersion": "v1", "kind": "List", "items": [VS]})),
        ("a JSON array", json.dumps([VS])),
        (
            "a typed list as the API server returns it (items without kind)",
            yaml.safe_dump(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "VirtualServiceList",
                    "items": [{k: v for k, v in VS.items() if k not in ("apiVersion", "kind")}],
                }
            ),
        ),
    ],
)
def test_every_form_kubectl_prints_reads_as_the_same_objects(tmp_path, form, text):
    assert load_snapshot([_write(tmp_path, "snap", text)]) == [VS], form


def test_files_and_standard_input_are_read_in_order(tmp_path):
    first = _write(tmp_path, "a.yaml", yaml.safe_dump(VS))
    other = {**VS, "metadata": {"name": "other", "namespace": "team-c"}}
    objects = load_snapshot([first, "-"], stdin=io.StringIO(json.dumps(other)))
    assert [o["metadata"]["name"] for o in objects] == ["search", "other"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("kind: [\n", "snap:2:1:"),
        ('{"kind": ', "snap:1:10:"),
        ("- 1\n", "document 1 [0]: is a number, not a Kubernetes object"),
        ("just text\n", "document 1: is a string, not a Kubernetes object"),
        ("kind: Service\nmetadata: {}\n", "not a Kubernetes object (no apiVersion, metadata.name)"),
        ("apiVersion: v1\nkind: List\nitems: 3\n", "List.items is not a list"),
    ],
)
def test_a_file_that_is_no_snapshot_is_refused_naming_file_and_place(tmp_path, text, expected):
    with pytest.raises(SnapshotError) as refused:
        load_snapshot([_write(tmp_path, "snap", text)])
    assert len(refused.value.problems) == 1
    assert expected in refused.value.problems[0]
    assert refused.value.problems[0].startswith(str(tmp_path / "snap"))


def test_every_unreadable_file_is_named_at_once(tmp_path):
    with pytest.raises(SnapshotError) as refused:
        load_snapshot([str(tmp_path / "missing.yaml"), _write(tmp_path, "bad", "- [")])
    assert [p.split(":")[0] for p in refused.value.problems] == [
        str(tmp_path / "missing.yaml"),
        str(tmp_path / "bad"),
    ]
    assert "cannot be read" in refused.value.problems[0]


def test_a_secret_keeps_its_key_names_and_loses_every_value(tmp_path):
    (secret,) = load_snapshot([_write(tmp_path, "s.yaml", yaml.safe_dump(SECRET))])
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "istio-system", "annotations": {"team": "edge"}},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""},
    }
    text = json.dumps(secret)
    for value in ("Y2VydA==", "c2VjcmV0", "plain-text-ca", "last-applied"):
        assert value not in text


def test_only_core_secrets_are_redacted_and_other_objects_pass_untouched():
    assert redact(VS) is VS
    sealed = {**SECRET, "apiVersion": "bitnami.com/v1alpha1", "kind": "SealedSecret"}
    assert redact(sealed) is sealed


@pytest.mark.parametrize(
    "api_version, kind, key",
    [
        ("networking.istio.io/v1", "Gateway", "Gateway"),
        ("networking.istio.io/v1beta1", "Gateway", "Gateway"),
        ("gateway.networking.k8s.io/v1", "Gateway", "Gateway.gateway.networking.k8s.io"),
        ("v1", "Service", "Service"),
        ("serving.knative.dev/v1", "Service", "Service.serving.knative.dev"),
        ("apps/v1", "Deployment", "Deployment"),
        ("v1", "Deployment", "Deployment.core"),
        ("example.com/v1", "Widget", "Widget"),
    ],
)
def test_a_kind_is_read_with_its_api_group(api_version, kind, key):
    assert kind_key({"apiVersion": api_version, "kind": kind}) == key


def test_an_object_key_ignores_the_version_and_namespaces_cluster_scoped_kinds_not():
    v1beta1 = {**VS, "apiVersion": "networking.istio.io/v1beta1"}
    assert object_key(VS, "x") == object_key(v1beta1, "x")
    assert object_key(VS, "x") == ("networking.istio.io", "VirtualService", "team-b", "search")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    assert object_key(namespace, "x") == ("", "Namespace", "", "a")
    assert api_group({"apiVersion": "v1"}) == ""


def _pod(name: str, owner: str, template_hash: str, namespace: str = "ml-serving") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": "sentiment", "pod-template-hash": template_hash},
            "ownerReferences": [{"kind": "ReplicaSet", "name": owner}],
        },
    }


def test_the_stack_replaces_its_live_objects_and_the_pods_of_its_deployments():
    live_vs = {**VS, "metadata": {"name": "sentiment", "namespace": "ml-serving"}}
    stack_vs = {**live_vs, "apiVersion": "networking.istio.io/v1beta1", "spec": {"hosts": ["x"]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "s-v3"}}
    old_pod = _pod("s-v3-5d8f-abc", "s-v3-5d8f", "5d8f")
    other_pod = _pod("s-v30-77aa-abc", "s-v30-77aa", "77aa")  # s-v30, not s-v3
    elsewhere = _pod("s-v3-5d8f-xyz", "s-v3-5d8f", "5d8f", namespace="team-b")
    world = merge(
        [stack_vs, deployment], [live_vs, old_pod, other_pod, elsewhere, VS], "ml-serving"
    )
    assert world.objects == [other_pod, elsewhere, VS, stack_vs, deployment]
    assert world.stack_ids == {id(stack_vs), id(deployment)}
    assert world.cluster == [live_vs, old_pod, other_pod, elsewhere, VS]


def _prod():
    config = load_stack("prod").config
    return config, build_plan(config).objects()


def _mesh_vs(namespace: str, name: str, host: str) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]},
    }


def test_findings_are_told_apart_by_whose_they_are():
    """On the stack's objects: `stack`. On the cluster's: `introduced` when the snapshot alone
    does not have the finding (the stack causes it, it fails the run), `cluster` when it does
    (reported, not failing)."""
    config, objects = _prod()
    host = "sentiment.ml-serving.svc.cluster.local"
    # Broken before and after the stack: routes to a host nobody serves.
    broken = _mesh_vs("team-c", "legacy", "gone.team-c.svc.cluster.local")
    findings = check(config, objects, cluster=[_mesh_vs("team-b", "shadow", host), broken])
    by_resource = {(f.resource, f.code): f for f in findings if f.code.startswith("IST01")}
    ours = by_resource[("VirtualService ml-serving/sentiment", "IST0109")]
    assert (ours.origin, ours.fails, ours.path) == ("stack", True, "models.sentiment.hosts")
    legacy = by_resource[("VirtualService team-c/legacy", "IST0101")]
    assert (legacy.origin, legacy.fails, legacy.path) == ("cluster", False, None)
    introduced = [f for f in findings if f.origin == "introduced"]
    assert introduced and all(f.resource == "VirtualService team-b/shadow" for f in introduced)


def test_ml_mesh_own_rules_and_the_pack_judge_only_the_stack():
    """A foreign Deployment in another namespace is no business of MESH0010 or the pack."""
    config, objects = _prod()
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "BadName", "namespace": "istio-system"},
        "spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}},
    }
    alone = check(config, objects)
    with_cluster = check(config, objects, cluster=[foreign])
    assert [f for f in with_cluster if not f.code.startswith("IST")] == [
        f for f in alone if not f.code.startswith("IST")
    ]


def test_without_a_snapshot_every_finding_is_the_stacks():
    config, objects = _prod()
    assert {f.origin for f in check(config, objects)} == {"stack"}
