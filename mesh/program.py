"""The Pulumi program: stack config in, Kubernetes and Istio resources registered.

This layer only reads config and registers what `mesh.plan` built; it makes no decision of its
own, so offline render shows exactly what `pulumi up` creates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.runtime import config as runtime_config

from mesh.charts import HelmChart
from mesh.checks import MeshCheckError, check, gate
from mesh.config import ConfigError, StackConfig, engine_value, is_misspelt_project, parse_config
from mesh.gatewayapi.pools import harden_picker
from mesh.plan import MODEL, Component, Plan, build_plan, model_outputs, stack_outputs
from mesh.secrets import replace_secrets, secret_values
from mesh.stackfile import PROJECT
from models.workloads import deployment_timeouts

# Kinds with a typed pulumi-kubernetes class, for a readable preview and provider-side
# await logic (a Deployment waits for its rollout). Everything else is a CustomResource.
TYPED_KINDS: dict[tuple[str, str], Any] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
}

# What must be applied (and, for Deployments, rolled out: Pulumi awaits them) before an object
# of a kind. A VirtualService therefore shifts traffic only once the subsets exist and the
# versions it routes to are ready. Looked up in the same component first, then stack-wide.
DEPENDS_ON_KINDS: dict[str, tuple[str, ...]] = {
    "Deployment": ("ServiceAccount",),
    "VirtualService": ("DestinationRule", "Deployment", "Gateway"),
    # routing: gateway-api: a route shifts traffic only once the version Services (and their
    # traffic policy) exist, the versions are rolled out and the Gateway it binds is there.
    "HTTPRoute": ("Service", "DestinationRule", "Deployment", "Gateway"),
    # Flagger needs its target Deployment and the MetricTemplate its analysis reads.
    "Canary": ("Deployment", "MetricTemplate"),
    # REGISTRY_ONLY egress only once the model store's ServiceEntries are there; on delete the
    # Sidecar goes first.
    "Sidecar": ("ServiceEntry",),
}


def read_config(stack: str) -> tuple[StackConfig, set[str]]:
    """Validate `ml-mesh:*` and return it with the plaintexts that must stay secret."""
    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | {
        key for key in values if runtime_config.is_config_secret(key)
    }
    raw: dict[str, Any] = {}
    secret_paths: list[tuple[str | int, ...]] = []
    for key, value in values.items():
        namespace, _, name = key.rpartition(":")
        if namespace != PROJECT:
            if is_misspelt_project(namespace):  # `mlmesh:gateway`: named by parse_config
                raw[key] = engine_value(key, value)
            continue
        raw[name] = engine_value(name, value)
        if key in secret_keys:
            secret_paths.append((name,))
    config = parse_config(raw, stack)
    return config, secret_values(config, stack, secret_paths)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Registrar:
    """Registers plain objects as Pulumi resources, remembering them by kind for dependencies."""

    def __init__(self, secrets: set[str]):
        self.secrets = secrets
        self.by_kind: dict[str, list[pulumi.Resource]] = {}

    def register(
        self,
        obj: dict,
        parent: pulumi.Resource | None = None,
        after: tuple[pulumi.Resource, ...] = (),
        scope: dict[str, list[pulumi.Resource]] | None = None,
        protect: bool | None = None,
        timeouts: tuple[int, int] | None = None,
    ) -> pulumi.Resource:
        """Register `obj` under `parent`, after `after` and the prerequisites of its kind;
        `timeouts` are the (create, update) seconds Pulumi may await it."""
        obj = replace_secrets(obj, self.secrets, pulumi.Output.secret)
        api_version, kind = obj["apiVersion"], obj["kind"]
        name = obj["metadata"]["name"]
        wanted = [r for k in DEPENDS_ON_KINDS.get(kind, ()) for r in self._prerequisites(k, scope)]
        # Built in one go rather than with ResourceOptions.merge, which copies the options and
        # every list in them for each of thousands of resources. `protect` stays unset (None)
        # for children, so they inherit it from their parent as Pulumi intends.
        opts = pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*after, *wanted],
            protect=protect,
            # Names are explicit, so a replacement must delete the old object first.
            delete_before_replace=True,
            custom_timeouts=(
                pulumi.CustomTimeouts(create=f"{timeouts[0]}s", update=f"{timeouts[1]}s")
                if timeouts is not None
                else None
            ),
        )
        fields = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        cls = TYPED_KINDS.get((api_version, kind))
        if cls is not None:
            resource = cls(name, opts=opts, **{_snake(k): v for k, v in fields.items()})
        else:
            resource = k8s.apiextensions.CustomResource(
                name, api_version=api_version, kind=kind, opts=opts, **fields
            )
        self.by_kind.setdefault(kind, []).append(resource)
        if scope is not None:
            scope.setdefault(kind, []).append(resource)
        return resource

    def _prerequisites(
        self, kind: str, scope: dict[str, list[pulumi.Resource]] | None
    ) -> list[pulumi.Resource]:
        """The objects of `kind` in the same component (a Deployment waits for its own model's
        ServiceAccount, not every model's: that would make dependencies grow with the square of
        the models), or the stack's when the component has none (the one Gateway)."""
        if scope and kind in scope:
            return scope[kind]
        return self.by_kind.get(kind, [])


class MeshComponent(pulumi.ComponentResource):
    """One group of the plan (a model, the ingress, the egress) as a node of the preview tree.
    `register` fills it."""

    def __init__(self, component: Component, opts: pulumi.ResourceOptions):
        super().__init__(component.type, component.name, None, opts)
        self.resources: list[pulumi.Resource] = []


def register(plan: Plan, config: StackConfig, secrets: set[str]) -> list[MeshComponent]:
    """The namespace, then each component with its children and outputs.

    Every child is registered from this one flat loop: Pulumi records the Python call stack of
    each resource it registers (its source position) and the cost grows with the depth of that
    stack, so children are not built from nested constructors and comprehensions. Children
    depend on the namespace themselves: a component's `depends_on` does not pass to them.
    """
    registrar = Registrar(secrets)
    ns = registrar.register(plan.namespace, protect=config.protected)
    components = []
    for component in plan.components:
        group = MeshComponent(component, pulumi.ResourceOptions(depends_on=[ns]))
        scope: dict[str, list[pulumi.Resource]] = {}
        charts = [register_chart(chart, group, ns) for chart in component.charts]
        group.resources.extend(charts)
        for obj in component.objects:
            timeouts = _deployment_timeouts(config, component, obj)
            # A model's routes shift traffic only once its endpoint pickers (and the pools
            # the charts create) are up: the route to a pool without its picker fails.
            after = (ns, *charts) if obj["kind"] == "HTTPRoute" else (ns,)
            group.resources.append(registrar.register(obj, group, after, scope, None, timeouts))
        group.register_outputs(
            model_outputs(config, component.name) if component.type == MODEL else {}
        )
        components.append(group)
    return components


def register_chart(chart: HelmChart, parent: pulumi.Resource, ns: pulumi.Resource) -> Any:
    """A Helm release (mesh.charts) as `kubernetes:helm.sh/v4:Chart`: the provider pulls the
    OCI chart at the pinned version, renders it with the values and registers its objects
    as children, awaiting them as it does any object (the picker Deployment's rollout)."""
    return k8s.helm.v4.Chart(
        chart.name,
        chart=chart.chart,
        version=chart.version,
        namespace=chart.namespace,
        values=chart.values,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[ns], transforms=[harden]),
    )


def harden(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
    """A Pulumi transform (it reaches the objects the chart's provider registers, which
    `transformations` do not): the picker Deployment gets the securityContext the chart has no
    value for (mesh.gatewayapi.pools `harden_picker`, pure, the same function the modelled
    Deployment goes through); every other resource is left as it is."""
    if args.type_ != "kubernetes:apps/v1:Deployment":
        return None
    props = dict(args.props)
    hardened = harden_picker({**props, "kind": "Deployment"})
    if hardened.get("spec") is props.get("spec"):
        return None
    return pulumi.ResourceTransformResult(props={**props, "spec": hardened["spec"]}, opts=args.opts)


def _deployment_timeouts(
    config: StackConfig, component: Component, obj: dict
) -> tuple[int, int] | None:
    """A model's Deployments get the await of their start-up budget (models.workloads
    `deployment_timeouts`), not Pulumi's default 10 minutes; the version is the object's
    `version` label (the target's too: it runs the model's target version)."""
    if component.type != MODEL or obj["kind"] != "Deployment":
        return None
    version = obj["metadata"]["labels"]["version"]
    return deployment_timeouts(config, component.name, version)


def export_all(outputs: dict[str, Any], secrets: Iterable[str]) -> None:
    for key, value in outputs.items():
        pulumi.export(key, replace_secrets(value, set(secrets), pulumi.Output.secret))


def main() -> None:
    stack = pulumi.get_stack()
    try:
        config, secrets = read_config(stack)
        plan = build_plan(config)
        # What the charts create too: the policy pack validates those objects at preview.
        findings = gate(stack, check(config, plan.cluster_objects()))
    except (ConfigError, MeshCheckError) as exc:
        # RunError: Pulumi prints the message alone, without a traceback, and registers nothing
        # (pulumi-language-python-exec: `except pulumi.RunError as e: pulumi.log.error(str(e))`);
        # a ConfigError's message is every problem of the stack, one line each.
        raise pulumi.RunError(str(exc)) from None
    for finding in findings:
        (pulumi.log.warn if finding.severity == "warning" else pulumi.log.info)(str(finding))
    register(plan, config, secrets)
    export_all(stack_outputs(config), secrets)
