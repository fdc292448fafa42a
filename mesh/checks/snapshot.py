"""A snapshot of the cluster, read for `mesh check --with`, and the world after `pulumi up`.

A snapshot is what `kubectl get ... -A -o yaml` (or `-o json`) prints: a `List` of objects,
multi-document YAML, a JSON object or array, or any mix of them across files (`-` reads
standard input). Typed lists (`VirtualServiceList`, as the API server returns them) give their
items the list's group and kind.

Secrets are reduced to their metadata the moment they are read: their `data` and `stringData`
values are dropped (the key names stay, as the gateway credential analyzer needs them), and so is
the `kubectl.kubernetes.io/last-applied-configuration` annotation, which holds the whole object,
values included, for every Secret created with `kubectl apply`. Nothing later in ml-mesh ever
holds a Secret's value, so no output can print one.

`merge` lays the stack over the snapshot: an object of the stack replaces its live version (same
group, kind, namespace and name, as the API server keys them, whatever the version), and the
live Pods of a Deployment the stack replaces are dropped (their Deployment's new template stands
for them, as its pods will after the rollout), so the result is the cluster as it will be after
`pulumi up`. `istioctl analyze` does the same with files and a live cluster: "File source takes
the highest precedence, since files are resources to be configured to in-cluster resources"
(istio pkg/config/analysis/local/istiod_analyze.go, `IstiodAnalyzer.Analyze`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mesh.checks.kinds import object_key

try:
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _Loader = yaml.SafeLoader

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = ""  # what every Secret value is replaced by: its key stays, its value never arrives


class SnapshotError(Exception):
    """A snapshot file that cannot be read. `problems`: one line each, `file: what is wrong`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class World:
    """The cluster after `pulumi up`: every object, and which of them are the stack's."""

    objects: list[dict[str, Any]]
    stack_ids: frozenset[int]  # id() of the stack's objects in `objects`
    cluster: list[dict[str, Any]]  # the snapshot as it is now (before `pulumi up`)
    # id() of a stack object that updates a live one -> the live creationTimestamp, which an
    # update keeps (istiod orders same-host services by it)
    created: dict[int, str] = field(default_factory=dict)


def load_snapshot(paths: Sequence[str], stdin: Any = None) -> list[dict[str, Any]]:
    """Every object of every file, in order, Secrets reduced to metadata. Raises SnapshotError
    naming each file and document that is not a Kubernetes object or not YAML/JSON at all."""
    objects: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in paths:
        name = "<stdin>" if path == "-" else path
        try:
            text = (stdin or sys.stdin).read() if path == "-" else Path(path).read_text()
        except OSError as error:
            problems.append(f"{name}: cannot be read: {error.strerror or error}")
            continue
        except UnicodeDecodeError:
            problems.append(f"{name}: is not text (expected the YAML or JSON kubectl prints)")
            continue
        try:
            documents = list(_documents(text))
        except yaml.YAMLError as error:
            problems.append(f"{name}:{_where(error)} {_yaml_problem(error)}")
            continue
        except json.JSONDecodeError as error:
            problems.append(f"{name}:{error.lineno}:{error.colno}: {error.msg}")
            continue
        for number, document in enumerate(documents, start=1):
            if document is None:
                continue
            for found in _objects(document, f"{name}: document {number}", problems):
                objects.append(redact(found))
    if problems:
        raise SnapshotError(problems)
    return objects


def _documents(text: str) -> Iterator[Any]:
    if text.lstrip()[:1] in ("{", "["):
        yield json.loads(text)
        return
    yield from yaml.load_all(text, Loader=_Loader)


def _where(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    return f"{mark.line + 1}:{mark.column + 1}:" if mark is not None else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    return str(problem) if problem else str(error).splitlines()[0]


def _objects(document: Any, where: str, problems: list[str]) -> Iterator[dict[str, Any]]:
    """The objects of one document: itself, or the items of a List (`kind: List` or a typed
    `FooList`), recursively; a JSON array is a list of documents."""
    if isinstance(document, list):
        for i, item in enumerate(document):
            yield from _objects(item, f"{where} [{i}]", problems)
        return
    if not isinstance(document, dict):
        what = "a string" if isinstance(document, str) else "a number"
        if isinstance(document, bool):
            what = "a boolean"
        problems.append(f"{where}: is {what}, not a Kubernetes object")
        return
    kind = document.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and "items" in document:
        items = document.get("items")
        if not isinstance(items, list):
            problems.append(f"{where}: {kind}.items is not a list")
            return
        item_kind = kind[: -len("List")] if kind != "List" else None
        for i, item in enumerate(items):
            if isinstance(item, dict) and item_kind and "kind" not in item:
                item = {"apiVersion": document.get("apiVersion"), "kind": item_kind, **item}
            yield from _objects(item, f"{where} items[{i}]", problems)
        return
    metadata = document.get("metadata")
    missing = [
        field
        for field, ok in (
            ("apiVersion", isinstance(document.get("apiVersion"), str)),
            ("kind", isinstance(kind, str) and bool(kind)),
            ("metadata.name", isinstance(metadata, dict) and bool(metadata.get("name"))),
        )
        if not ok
    ]
    if missing:
        problems.append(
            f"{where}: not a Kubernetes object (no {', '.join(missing)}); a snapshot holds what "
            "`kubectl get ... -o yaml` prints"
        )
        return
    yield document


def redact(obj: dict[str, Any]) -> dict[str, Any]:
    """A Secret reduced to what the analyzers may know (metadata, type, key names); any other
    object as it is. Any `kind: Secret` is reduced, whatever its apiVersion (a hand-written or
    mangled snapshot, a CRD of that name): it keeps that apiVersion, so it stays what it was to
    the index (mesh.checks.kinds), but never its values."""
    if obj.get("kind") != "Secret":
        return obj
    metadata = dict(obj.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    keys = [
        str(key)
        for field in ("data", "stringData")
        if isinstance(obj.get(field), dict)
        for key in obj[field]
    ]
    secret: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": "Secret",
        "metadata": metadata,
    }
    if "type" in obj:
        secret["type"] = obj["type"]
    secret["data"] = dict.fromkeys(keys, REDACTED)
    return secret


def _deployment_of(pod: dict[str, Any]) -> str | None:
    """The Deployment that owns `pod`: its ReplicaSet's name without the `pod-template-hash`
    suffix the Deployment controller appends (`sentiment-v3-5d8f7c9b6` -> `sentiment-v3`;
    kubernetes pkg/controller/deployment/sync.go, `getNewReplicaSet`)."""
    metadata = pod.get("metadata") or {}
    template_hash = (metadata.get("labels") or {}).get("pod-template-hash")
    for owner in metadata.get("ownerReferences") or []:
        if not isinstance(owner, dict) or owner.get("kind") != "ReplicaSet":
            continue
        name = str(owner.get("name", ""))
        if template_hash and name.endswith(f"-{template_hash}"):
            return name[: -len(template_hash) - 1]
    return None


def merge(
    stack: Iterable[dict[str, Any]], cluster: Sequence[dict[str, Any]], default_namespace: str
) -> World:
    """The stack laid over the snapshot (see the module docstring)."""
    stack = list(stack)
    keys = {object_key(obj, default_namespace) for obj in stack}
    replaced_deployments = {(ns, name) for group, kind, ns, name in keys if kind == "Deployment"}
    kept = []
    live_created: dict[tuple[str, str, str, str], str] = {}
    for obj in cluster:
        if (key := object_key(obj, default_namespace)) in keys:
            if stamp := (obj.get("metadata") or {}).get("creationTimestamp"):
                live_created[key] = str(stamp)
            continue
        if obj.get("kind") == "Pod" and obj.get("apiVersion") == "v1":
            namespace = str((obj.get("metadata") or {}).get("namespace") or default_namespace)
            if (namespace, _deployment_of(obj)) in replaced_deployments:
                continue
        kept.append(obj)
    created = {
        id(obj): live_created[key]
        for obj in stack
        if (key := object_key(obj, default_namespace)) in live_created
    }
    return World(kept + stack, frozenset(map(id, stack)), list(cluster), created)
