"""Where a finding points: the stack config key behind an object, and the object itself.

Objects carry their model in the `app` label; from it and the stack config a rule names the
key a user edits (`models.sentiment.canary.version`) rather than a path inside a rendered
object the user never wrote.
"""

from __future__ import annotations

from typing import Any

from mesh.checks.findings import SCHEMA_VALIDATION_ERROR, SCHEMA_WARNING, Finding, Severity
from mesh.checks.index import _Index
from mesh.checks.kinds import CLUSTER_SCOPED
from mesh.checks.objects import _labels, _name


def _model(index: _Index, obj: dict[str, Any]) -> str | None:
    """The model of a stack object (none for a cluster object, whatever its `app` label)."""
    if not index.is_stack(obj):
        return None
    app = _labels(obj).get("app")
    return app if isinstance(app, str) and app in index.config.models else None


def _model_path(index: _Index, obj: dict[str, Any], *rest: str) -> str | None:
    model = _model(index, obj)
    return ".".join(("models", model, *rest)) if model else None


def _subset_path(index: _Index, obj: dict[str, Any], subset: str) -> str | None:
    """The key that put `subset` into a route: the canary version, or the stable one."""
    model = _model(index, obj)
    if model is None:
        return None
    config = index.config.models[model]
    if config.canary is not None and config.canary.version == subset:
        return f"models.{model}.canary.version"
    return f"models.{model}.stable"


def _ref(index: _Index, obj: dict[str, Any]) -> str:
    """`Kind namespace/name`, or `Kind name` for a cluster-scoped kind (as istioctl names it)."""
    if obj.get("kind") in CLUSTER_SCOPED:
        return f"{obj.get('kind')} {_name(obj)}"
    return f"{obj.get('kind')} {index.ns(obj)}/{_name(obj)}"


def _finding(
    index: _Index,
    obj: dict[str, Any],
    code: str,
    severity: Severity,
    path: str | None,
    message: str,
) -> Finding:
    if not index.is_stack(obj):  # a cluster object: no key of the stack's config made it
        return Finding(severity, code, None, _ref(index, obj), message, "cluster")
    return Finding(severity, code, path, _ref(index, obj), message)


def _webhook(
    index: _Index, obj: dict[str, Any], path: str | None, message: str, warning: bool = False
) -> Finding:
    """A rule istiod's validating webhook enforces: analyze reports it as IST0106/IST0133."""
    if warning:
        return _finding(index, obj, SCHEMA_WARNING, "warning", path, message)
    return _finding(index, obj, SCHEMA_VALIDATION_ERROR, "error", path, message)
