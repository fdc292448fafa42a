"""The policy pack's rules on the plan (POLICY/<policy>): what `pulumi preview --policy-pack
policy` refuses, refused offline by `mesh check`, `render`, `mesh diff` and the program itself.

The rules are the pack's own functions, `policy.rules.RESOURCE_RULES` and `STACK_RULES`, called
by policy name exactly as policy/policies.py calls them; their config is the pack's config file
(policy/config.json), the one the workflows pass as `--policy-pack-config`. So mesh check and
the pack can never disagree, and a protected stack run without `--policy-pack` still holds.

The pack applies to protected stacks (docs/policy-pack.md), so these findings appear only where
`protected` is true. Each object is handed to a rule as the pack sees it: the Pulumi type token
pulumi-kubernetes registers it as (`rules.resource_type`) and its properties. A violation is an
error, or a warning where the pack config makes the policy advisory, and is not reported where
it disables it; its code is `POLICY/<policy name>`, so it is never mistaken for Istio's (IST)
or ml-mesh's own (MESH) codes, and it names the policy a user finds in the pack's output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import Finding, Severity
from mesh.checks.images import _image_path
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels
from mesh.checks.paths import _finding, _model, _model_path
from mesh.config import ConfigError, Problem
from models.workloads import SERVER_CONTAINER
from policy import rules

CODE_PREFIX = "POLICY/"
_SEVERITY: dict[str, Severity] = {"mandatory": "error", "remediate": "error", "advisory": "warning"}


def code(policy: str) -> str:
    """`POLICY/canary-weight-within-maximum`: the finding code of one of the pack's policies."""
    return CODE_PREFIX + policy


def pack_rules(index: _Index) -> Iterator[Finding]:
    """Every violation the pack would report for this plan, on protected stacks."""
    if not index.config.protected:
        return
    config = index.pack_config if index.pack_config is not None else read_pack_config()
    resources = [
        (rules.resource_type(str(obj.get("apiVersion", "")), str(obj.get("kind", ""))), obj)
        for objects in index.by_kind.values()
        for obj in objects
    ]
    for policy, rule in rules.RESOURCE_RULES.items():
        severity = _SEVERITY.get(rules.enforcement(config, policy))
        if severity is None:
            continue
        settings = rules.policy_config(config, policy)
        for resource_type, obj in resources:
            for problem in rule(resource_type, obj, settings):
                path = _config_path(index, policy, obj, problem)
                yield _finding(index, obj, code(policy), severity, path, problem)
    for policy, stack_rule in rules.STACK_RULES.items():
        severity = _SEVERITY.get(rules.enforcement(config, policy))
        if severity is None:
            continue
        # The pack judges the stack's objects alone (mesh.checks.run.check): a snapshot's
        # gateway pods in istio-system are not workloads of the stack.
        own = [(kind, obj) for kind, obj in resources if index.is_stack(obj)]
        for problem in stack_rule(own, rules.policy_config(config, policy)):
            yield Finding(severity, code(policy), _STACK_PATHS.get(policy), "stack", problem)


def read_pack_config() -> dict[str, Any]:
    """The working tree's pack config; a file that does not read is a ConfigError (one line
    naming policy/config.json, exit 2 from `python -m mesh`, a RunError in the program)."""
    try:
        return rules.pack_config()
    except rules.PackConfigError as exc:
        message = f"ml-mesh: invalid policy pack config: {exc}"
        raise ConfigError.of("", [Problem("", str(exc), text=message)]) from None


_STACK_PATHS = {rules.MTLS_STRICT: "security.mtls"}


def _config_path(index: _Index, policy: str, obj: dict[str, Any], problem: str) -> str | None:
    """The key a user edits to fix a violation, where one exists (the security context and
    resource limits of the fetch container are ml-mesh's own: no key)."""
    if policy == rules.CANARY_WEIGHT:
        return _model_path(index, obj, "canary", "weight")
    if policy == rules.NO_FAULT_INJECTION:
        return _model_path(index, obj, "fault")
    container = _container(obj, problem)
    if policy == rules.IMAGE_PINNED and container:
        return _image_path(index, obj, container)
    if policy == rules.RESOURCES_LIMITED and container.get("name") == SERVER_CONTAINER:
        return _version_path(index, obj, "resources")
    return None


def _container(obj: dict[str, Any], problem: str) -> dict[str, Any]:
    """The container a violation names (the rules begin with `container 'server'`), else {}."""
    spec = _dict(rules.pod_spec(str(obj.get("kind", "")), obj))
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or ():
            named = f"container {_dict(container).get('name')!r}"
            if problem.startswith(named + " ") or problem.startswith(named + ":"):
                return _dict(container)
    return {}


def _version_path(index: _Index, obj: dict[str, Any], field: str) -> str | None:
    model = _model(index, obj)
    version = _labels(obj).get("version")
    if model is None or version not in index.config.models[model].versions:
        return _model_path(index, obj, field)
    return f"models.{model}.versions.{version}.{field}"
