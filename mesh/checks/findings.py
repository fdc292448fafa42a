"""What a check reports: a Finding with Istio's code and level, and the gate that stops a run.

Codes and levels are those of `istioctl analyze` (RULES.md §7); rules of istiod's validating
webhook report as IST0106 (error) or IST0133 (warning). ml-mesh's own rules, which no Istio
analyzer has, carry `MESH` codes, so they can never be mistaken for (or collide with)
Istio's. The program and `render` pass the findings through `gate`: any error raises MeshCheckError, whose message is the one line a user
sees, so nothing is registered or rendered from a plan Istio would reject or break on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning", "info"]
# Whose problem a finding is (`mesh check --with`): the stack's own object, an object of the
# cluster that the stack breaks (absent from the snapshot's own findings), or one that is
# already so in the cluster. Only the first two fail a run.
Origin = Literal["stack", "introduced", "cluster"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")

REFERENCED_RESOURCE_NOT_FOUND = "IST0101"
NAMESPACE_NOT_INJECTED = "IST0102"
POD_MISSING_PROXY = "IST0103"
SCHEMA_VALIDATION_ERROR = "IST0106"
CONFLICTING_MESH_GATEWAY_HOSTS = "IST0109"
DESTINATION_PORT_SELECTOR_REQUIRED = "IST0112"
PORT_NAME_NOT_UNDER_CONVENTION = "IST0118"
EXTERNAL_NAME_INVALID_PORT_NAME = "IST0150"
NAMESPACE_MULTIPLE_INJECTION_LABELS = "IST0123"
HOST_NOT_FOUND_IN_GATEWAY = "IST0132"
INGRESS_ROUTE_RULES_NOT_AFFECTED = "IST0140"
NAMESPACE_INJECTION_ENABLED_BY_DEFAULT = "IST0148"
SCHEMA_WARNING = "IST0133"
REFERENCED_INTERNAL_GATEWAY = "IST0165"
SUBSET_SELECTS_NO_PODS = "IST0173"
UNKNOWN_DESTINATION_RULE_HOST = "IST0174"
# Istio's gateway analyzers over the gateway workload (mesh.checks.gateway_workloads).
GATEWAY_DUPLICATE_CERTIFICATE = "IST0138"
CONFLICTING_GATEWAYS = "IST0145"
INVALID_GATEWAY_CREDENTIAL = "IST0161"
GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "IST0162"
# ml-mesh's own rules, about rollouts and images rather than Istio config
# (mesh.checks.rollouts, mesh.checks.images, mesh.checks.alerting).
GPU_ROLLOUT_NEEDS_SPARE = "MESH0001"
ROLLOUT_TAKES_VERSION_DOWN = "MESH0002"
IMAGE_NOT_PINNED_BY_DIGEST = "MESH0003"
ALERTS_WITHOUT_RELEASE_LABEL = "MESH0004"
# What the Kubernetes API server validates and a JSON Schema cannot express
# (mesh.checks.kubernetes). MESH0009 is left to another rule of ml-mesh's own.
KUBERNETES_REFUSES = "MESH0010"  # error: the API server rejects the object (`pulumi up` fails)
KUBERNETES_WARNS = "MESH0011"  # warning: the API server accepts it with a `Warning:` header
SELECTS_NOTHING = "MESH0012"  # a selector or reference that finds nothing in the stack (warning; error for a subset none of whose pods its Service selects)
BUDGET_BLOCKS_DRAINS = "MESH0013"  # warning: a PodDisruptionBudget no eviction can satisfy
GPU_ON_CPU_IMAGE = "MESH0014"  # warning: a GPU requested for an image built without CUDA
# Workload policies and route matches (mesh.checks.matches, mesh.checks.workload_policies).
CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = "IST0110"
MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = "IST0111"
NO_MATCHING_WORKLOADS_FOUND = "IST0127"
VIRTUAL_SERVICE_UNREACHABLE_RULE = "IST0130"
VIRTUAL_SERVICE_INEFFECTIVE_MATCH = "IST0131"
SERVICE_ENTRY_ADDRESSES_REQUIRED = "IST0134"
CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = "IST0159"
MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = "IST0160"
INEFFECTIVE_POLICY = "IST0167"  # a Sidecar of an ambient namespace or pod: nothing reads it
# ml-mesh's own: two ServiceEntries (or a Service) declare one host and port with different
# protocols; istiod keeps one of them (pilot/pkg/model/push_context.go initServiceRegistry).
SERVICE_ENTRY_PROTOCOL_CONFLICT = "MESH0005"
# ml-mesh's own: an AuthorizationPolicy principal names a namespace the cluster does not have.
PRINCIPAL_NAMESPACE_NOT_FOUND = "MESH0006"
# ml-mesh's own: a Gateway credential not checked, the snapshot holding no Secrets of the
# namespace of the gateway pods (mesh.checks.gateway_workloads).
SECRETS_NOT_LISTED = "MESH0007"
# ml-mesh's own: a MUTUAL or OPTIONAL_MUTUAL gateway server whose Secrets hold no client CA
# (pilot's CredentialsController.GetCaCert / ExtractRoot; no Istio analyzer checks it).
GATEWAY_CLIENT_CA_MISSING = "MESH0008"
# ml-mesh's own: Gateway API routes that istiod will not attach or route as written
# (mesh.checks.gateway_api): the status condition istiod will set, predicted before `pulumi up`
# (after it, `istioctl analyze` reports the condition itself as IST0171).
GATEWAY_API_PARENT_NOT_ACCEPTED = "MESH0020"  # error: a parentRef that does not attach
GATEWAY_API_HOSTNAME_NOT_ATTACHED = "MESH0021"  # error: no route hostname matches the listener's
GATEWAY_API_BACKEND_UNRESOLVED = "MESH0022"  # error: a backendRef istiod cannot route to
GATEWAY_API_ZERO_WEIGHTS = "MESH0023"  # error: a rule whose backendRefs all weigh 0 (500)
GATEWAY_API_CONFLICTING_ROUTES = "MESH0024"  # warning: an equal match of an older route wins
GATEWAY_API_POOL_SPLIT = "MESH0026"  # error: a model's pool route and mesh route split differently
# ml-mesh's own: a protected ambient stack's egress NetworkPolicy admits any address on a port
# (mesh.checks.egress): ztunnel has no REGISTRY_ONLY and a NetworkPolicy names no hosts.
AMBIENT_EGRESS_OPEN = "MESH0025"  # warning
# ml-mesh's own: an InferencePool at FailClose whose picker rolls out with Recreate
# (mesh.checks.pools): every picker rollout is an outage of the pool's ingress.
POOL_FAIL_CLOSE_OUTAGE = "MESH0027"  # warning


@dataclass(frozen=True)
class Finding:
    """One problem: Istio's code, how bad it is, the config path behind it, and what is wrong."""

    severity: Severity
    code: str
    path: str | None  # config path (`models.sentiment.canary.version`), None if no key caused it
    resource: str  # `VirtualService ml-serving/sentiment`
    message: str
    origin: Origin = "stack"

    @property
    def fails(self) -> bool:
        """An error the stack is answerable for: on its own objects, or one it introduces."""
        return self.severity == "error" and self.origin != "cluster"

    def __str__(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"{self.severity} {self.code}{where}: {self.resource}: {self.message}"


class MeshCheckError(Exception):
    """The plan has error findings. `str()` is the one line a user sees."""

    def __init__(self, stack: str, errors: list[Finding]):
        self.stack, self.errors = stack, errors
        more = len(errors) - 1
        tail = f" (and {more} more; run `python -m mesh check {stack}` for all)" if more else ""
        super().__init__(f"ml-mesh: stack '{stack}' fails mesh checks: {errors[0]}{tail}")


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The errors that fail a run (not those already in the cluster before the stack)."""
    return [f for f in findings if f.fails]


def gate(stack: str, findings: list[Finding]) -> list[Finding]:
    """Raise MeshCheckError if any finding is an error; otherwise return the findings."""
    if failed := errors(findings):
        raise MeshCheckError(stack, failed)
    return findings
