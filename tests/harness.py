"""Runs the real Pulumi program against Pulumi mocks and returns what it registered.

Every call gets fresh mocks, a fresh root stack and its own config, so runs never leak into
each other; the program reads config only when it runs, never at import.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc, settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import massage, run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from mesh import program

# Pulumi's Helm release, a remote component (pulumi-kubernetes `helm.v4.Chart` registers with
# `remote=True`): the engine would have the kubernetes provider's Construct render the chart
# and register its objects as children. Under mocks no provider runs: the mock monitor hands
# the registration to `new_resource` with this type, and no child is registered.
CHART_TYPE = "kubernetes:helm.sh/v4:Chart"


@dataclass(frozen=True)
class Registered:
    type: str
    name: str
    parent_type: str | None  # type token of the parent, None for stack-level resources
    custom: bool
    inputs: dict[str, Any]
    depends_on: frozenset[tuple[str, str]] = frozenset()  # (type token, logical name)
    # ResourceOptions.custom_timeouts as the engine receives them, e.g. {"create": "1160s"};
    # only the operations that were set.
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    remote: bool = False  # a component its provider constructs (a Helm Chart), not the program

    @property
    def secret_paths(self) -> list[str]:
        """Dotted paths of the inputs that arrived as Pulumi secrets."""
        found: list[str] = []

        def walk(node: Any, path: str) -> None:
            if rpc.is_rpc_secret(node):
                found.append(path)
            elif isinstance(node, dict):
                for key, value in node.items():
                    walk(value, f"{path}.{key}" if path else key)
            elif isinstance(node, list):
                for index, value in enumerate(node):
                    walk(value, f"{path}[{index}]")

        walk(self.inputs, "")
        return found

    def object(self) -> dict[str, Any]:
        """The Kubernetes object as the provider would receive it (secrets unwrapped)."""
        return _plain(self.inputs)


@dataclass
class Run:
    resources: list[Registered] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    @property
    def kubernetes(self) -> list[Registered]:
        return [r for r in self.resources if r.custom]

    def objects(self) -> list[dict[str, Any]]:
        return [r.object() for r in self.kubernetes]

    @property
    def charts(self) -> list[Registered]:
        """The Helm releases registered (their objects are the provider's, never seen here)."""
        return [r for r in self.resources if r.type == CHART_TYPE]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects() if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found

    def resource(self, kind: str, name: str) -> Registered:
        (found,) = [r for r in self.kubernetes if r.inputs["kind"] == kind and r.name == name]
        return found


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run):
        self.run = run

    def new_resource(self, args: mocks.MockResourceArgs):
        """A custom resource gets an ID and its inputs as state, as a create returns them. A
        component gets no ID (Pulumi's Mocks contract: None for components); a remote one (the
        Helm Chart) keeps its inputs and no `resources` output: that list of children is what
        the provider's Construct would return, and no provider runs here."""
        if not args.custom:
            return None, args.inputs
        return f"{args.name}-id", args.inputs

    def call(self, args: mocks.MockCallArgs):
        return {}, None


class _Monitor(mocks.MockMonitor):
    """Records each registration with its parent's type, which MockResourceArgs omits."""

    def __init__(self, mocks_: _Mocks):
        super().__init__(mocks_)
        self.run = mocks_.run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            parent_type = request.parent.split("::")[-2].split("$")[-1] if request.parent else None
            if parent_type == "pulumi:pulumi:Stack":
                parent_type = None
            self.run.resources.append(
                Registered(
                    type=request.type,
                    name=request.name,
                    parent_type=parent_type,
                    custom=request.custom,
                    inputs=rpc.deserialize_properties(request.object),
                    depends_on=frozenset(_type_and_name(urn) for urn in request.dependencies),
                    custom_timeouts=_timeouts(request),
                    remote=request.remote,
                )
            )
        return response


def _timeouts(request) -> dict[str, str]:
    timeouts = request.customTimeouts
    return {
        op: getattr(timeouts, op) for op in ("create", "update", "delete") if getattr(timeouts, op)
    }


def _type_and_name(urn: str) -> tuple[str, str]:
    *_, type_chain, name = urn.split("::")
    return type_chain.split("$")[-1], name


def _plain(node: Any) -> Any:
    """Unwrap secrets, and turn the floats protobuf made of integers back into ints."""
    node = rpc.unwrap_rpc_secret(node)
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, float) and node.is_integer():
        return int(node)
    return node


def _stack_outputs() -> dict[str, Any]:
    """The stack's exports as the engine receives them when a real program ends (the Stack
    massages and serializes them; set_mocks finished the mock Stack before the program ran, so
    this does it here): secrets marked, nulls kept."""
    root = settings.get_root_resource()
    struct = _sync_await(rpc.serialize_properties(massage(root.outputs, []), {}))
    return json_format.MessageToDict(struct)


def _contains_secret(node: Any) -> bool:
    if rpc.is_rpc_secret(node):
        return True
    if isinstance(node, dict):
        return any(_contains_secret(v) for v in node.values())
    if isinstance(node, list):
        return any(_contains_secret(v) for v in node)
    return False


def stack_config(project_config: dict[str, Any]) -> dict[str, str]:
    """`{"models": {...}}` -> `{"ml-mesh:models": "<json>"}`, as the engine passes config."""
    return {
        f"ml-mesh:{key}": value if isinstance(value, str) else json.dumps(value)
        for key, value in project_config.items()
    }


def try_program(
    project_config: dict[str, Any],
    stack: str = "dev",
    secret_keys: tuple[str, ...] = (),
    main: Callable[[], None] | None = None,
    other_keys: dict[str, str] | None = None,
) -> tuple[Run, Exception | None]:
    """Run mesh.program.main() (or `main`) for this config; return what it registered and what
    it raised. `other_keys` are config keys passed as they are (`aws:region`, `mlmesh:x`)."""
    run = Run()
    settings.ROOT.set(None)
    mocks_ = _Mocks(run)
    mocks.set_mocks(mocks_, project="ml-mesh", stack=stack, preview=False, monitor=_Monitor(mocks_))
    config = {**stack_config(project_config), **(other_keys or {})}
    set_all_config(config, [f"ml-mesh:{k}" for k in secret_keys])
    try:
        _sync_await(run_pulumi_func(main or program.main))
        for key, value in _stack_outputs().items():
            run.outputs[key] = _plain(value)
            if _contains_secret(value):
                run.secret_outputs.add(key)
    except Exception as exc:  # the caller decides whether this was expected
        return run, exc
    finally:
        set_all_config({}, [])
    return run, None


def run_program(
    project_config: dict[str, Any], stack: str = "dev", secret_keys: tuple[str, ...] = ()
) -> Run:
    """Run the program and fail loudly if it raised."""
    run, error = try_program(project_config, stack, secret_keys)
    if error is not None:
        raise error
    return run
