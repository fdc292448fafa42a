"""Mesh analyzers: the rules Istio's webhook and `istioctl analyze` enforce, run on the plan.

A JSON Schema cannot see across resources: a VirtualService may route to a subset no
DestinationRule defines and every object still validates, then requests fail with 503 after
`pulumi up`. `check(config, objects)` finds such problems before anything is registered; the
program refuses to run on an error and `python -m mesh check` prints every finding.

Rules and codes follow ../shared/istio/RULES.md (Istio 1.30): cross-resource analyzers keep their
IST code and level; webhook rules report as IST0106 (error) or IST0133 (warning), as
`istioctl analyze` does. Each finding names the config path that caused it where one exists.
Every rule indexes the objects once, so a check is linear in the number of objects.

One module per concern; this package re-exports the public names, so `from mesh.checks import X`
works as it did when this was one module:

- `findings`: Finding, the severities and IST codes, MeshCheckError, `errors` and `gate`
- `run`: `check`, every rule of RULES in a fixed order over one index, findings sorted
- `objects`: defensive accessors of plan objects, VirtualService routes and destinations,
  `fqdn`, `host_matches`, `hosts_overlap` (Istio's `host.Name.Matches`) and `resource_name`
- `index`: `_Index`, the objects by kind with the lookups the rules need, built once per check
- `paths`: the config path and resource a finding names
- `formats`: value formats istiod checks (Go durations, DNS labels, label keys and values,
  port numbers, protocols)
- `destinations`: routes resolve to hosts, ports and subsets (IST0101, IST0112); subsets select
  pods, DestinationRule hosts exist (IST0173, IST0174)
- `gateways`: gateway references and hosts (IST0101, IST0132, IST0165); Gateway servers and TLS
- `gateway_workloads` (`--with` only): the Gateway's pods and their Service ports (IST0101,
  IST0162), its credential Secrets in the pods' namespace (IST0101, IST0161), conflicting
  Gateways on one workload (IST0145), certificates shared between Gateways (IST0138)
- `mesh_wide`: one mesh-bound VirtualService per host (IST0109), Service port protocols
  (IST0118), namespace injection (IST0102, IST0123)
- `images`: container images pinned by digest in protected stacks (MESH0003, ml-mesh's own)
- `egress`: a protected ambient stack's egress NetworkPolicy rule that admits any address
  (MESH0025, ml-mesh's own): ztunnel has no REGISTRY_ONLY
- `rollouts`: ml-mesh's own rules: a GPU rollout that needs a spare GPU (MESH0001), a
  `replace` rollout that takes a single-pod version down (MESH0002)
- `alerting`: a PrometheusRule without the `release` label kube-prometheus-stack selects
  by (MESH0004)
- `kubernetes`: what the Kubernetes API server refuses and a schema cannot express (MESH0010:
  names, labels, annotations, containers, ports, env, requests above limits, Deployment
  selectors and strategies, Service ports, HPA bounds and metrics, PDB fields), what it accepts
  but cannot honour (MESH0011), selectors and references that find nothing (MESH0012), budgets
  that block every drain (MESH0013), a GPU for a CPU-only image (MESH0014); each rule named
  after the Kubernetes function it mirrors
- `k8s_formats`, `quantity`: the apimachinery formats and `resource.ParseQuantity`, exactly
- `values`: webhook rules on values: durations, route weights, retries, percentages, subset
  names and labels, exportTo, ports (IST0106)
- `matches`: VirtualService rules no request reaches (IST0130) and matches an earlier rule
  takes (IST0131), istiod's validation `analyzeUnreachable*Rules` ported
- `gateway_api`: Gateway API routes as istiod resolves them (conversion.go): parentRefs that
  do not attach (MESH0020), listener hostnames no route hostname matches (MESH0021),
  backendRefs that do not resolve (MESH0022), rules whose backends all weigh 0 (MESH0023), and
  equal matches of two routes on one parent (MESH0024), a model's pool route and mesh route
  that split differently (MESH0026)
- `workload_policies`: policies that select workloads, over the stack and a cluster snapshot:
  AuthorizationPolicy selectors and namespaces (IST0127, IST0101; principals of missing
  namespaces MESH0006), Sidecar and Telemetry selectors (IST0101, IST0110, IST0111, IST0159,
  IST0160), ServiceEntry addresses (IST0134) and one host and port with two protocols (MESH0005)
"""

from mesh.checks.destinations import destination_rule_subsets, virtual_service_destinations
from mesh.checks.findings import (
    BUDGET_BLOCKS_DRAINS,
    CONFLICTING_MESH_GATEWAY_HOSTS,
    DESTINATION_PORT_SELECTOR_REQUIRED,
    GPU_ON_CPU_IMAGE,
    GPU_ROLLOUT_NEEDS_SPARE,
    HOST_NOT_FOUND_IN_GATEWAY,
    IMAGE_NOT_PINNED_BY_DIGEST,
    KUBERNETES_REFUSES,
    KUBERNETES_WARNS,
    NAMESPACE_MULTIPLE_INJECTION_LABELS,
    NAMESPACE_NOT_INJECTED,
    PORT_NAME_NOT_UNDER_CONVENTION,
    REFERENCED_INTERNAL_GATEWAY,
    REFERENCED_RESOURCE_NOT_FOUND,
    ROLLOUT_TAKES_VERSION_DOWN,
    SCHEMA_VALIDATION_ERROR,
    SCHEMA_WARNING,
    SELECTS_NOTHING,
    SEVERITIES,
    SUBSET_SELECTS_NO_PODS,
    UNKNOWN_DESTINATION_RULE_HOST,
    Finding,
    MeshCheckError,
    Severity,
    errors,
    gate,
)
from mesh.checks.formats import MILLISECOND, PROTOCOLS, is_dns_label, parse_duration
from mesh.checks.gateway_api import (
    gateway_api_backends,
    gateway_api_conflicts,
    gateway_api_parents,
    gateway_api_pool_split,
    gateway_api_weights,
)
from mesh.checks.gateway_workloads import (
    conflicting_gateways,
    duplicate_certificates,
    gateway_credentials,
    gateway_ports,
)
from mesh.checks.gateways import gateway_references, gateway_servers
from mesh.checks.images import image_digests
from mesh.checks.index import _Index
from mesh.checks.kubernetes import (
    autoscalers,
    config_maps,
    cpu_only_image,
    deployment_specs,
    disruption_budgets,
    gpu_images,
    object_metadata,
    pod_templates,
    services,
)
from mesh.checks.matches import unreachable_routes
from mesh.checks.mesh_wide import (
    INJECTION_LABEL,
    REVISION_LABEL,
    mesh_host_conflicts,
    namespace_injection,
    port_protocol,
    service_port_names,
)
from mesh.checks.objects import fqdn, host_matches, hosts_overlap
from mesh.checks.quantity import parse_quantity
from mesh.checks.rollouts import rollouts
from mesh.checks.run import RULES, check
from mesh.checks.values import (
    RETRY_ON,
    durations,
    export_to,
    percentages,
    ports,
    retries,
    route_weights,
    subset_labels,
)
from mesh.checks.workload_policies import (
    authorization_policies,
    service_entry_addresses,
    service_entry_protocols,
    sidecar_selectors,
    telemetry_selectors,
)

__all__ = [
    "BUDGET_BLOCKS_DRAINS",
    "CONFLICTING_MESH_GATEWAY_HOSTS",
    "DESTINATION_PORT_SELECTOR_REQUIRED",
    "GPU_ON_CPU_IMAGE",
    "GPU_ROLLOUT_NEEDS_SPARE",
    "HOST_NOT_FOUND_IN_GATEWAY",
    "IMAGE_NOT_PINNED_BY_DIGEST",
    "INJECTION_LABEL",
    "KUBERNETES_REFUSES",
    "KUBERNETES_WARNS",
    "MILLISECOND",
    "NAMESPACE_MULTIPLE_INJECTION_LABELS",
    "NAMESPACE_NOT_INJECTED",
    "PORT_NAME_NOT_UNDER_CONVENTION",
    "PROTOCOLS",
    "REFERENCED_INTERNAL_GATEWAY",
    "REFERENCED_RESOURCE_NOT_FOUND",
    "RETRY_ON",
    "REVISION_LABEL",
    "ROLLOUT_TAKES_VERSION_DOWN",
    "RULES",
    "SCHEMA_VALIDATION_ERROR",
    "SCHEMA_WARNING",
    "SELECTS_NOTHING",
    "SEVERITIES",
    "SUBSET_SELECTS_NO_PODS",
    "UNKNOWN_DESTINATION_RULE_HOST",
    "Finding",
    "MeshCheckError",
    "Severity",
    "_Index",
    "authorization_policies",
    "autoscalers",
    "check",
    "config_maps",
    "conflicting_gateways",
    "cpu_only_image",
    "deployment_specs",
    "destination_rule_subsets",
    "disruption_budgets",
    "duplicate_certificates",
    "durations",
    "errors",
    "export_to",
    "fqdn",
    "gate",
    "gateway_api_backends",
    "gateway_api_conflicts",
    "gateway_api_parents",
    "gateway_api_pool_split",
    "gateway_api_weights",
    "gateway_credentials",
    "gateway_ports",
    "gateway_references",
    "gateway_servers",
    "gpu_images",
    "host_matches",
    "hosts_overlap",
    "image_digests",
    "is_dns_label",
    "mesh_host_conflicts",
    "namespace_injection",
    "object_metadata",
    "parse_duration",
    "parse_quantity",
    "percentages",
    "pod_templates",
    "port_protocol",
    "ports",
    "retries",
    "rollouts",
    "route_weights",
    "service_entry_addresses",
    "service_entry_protocols",
    "service_port_names",
    "services",
    "sidecar_selectors",
    "subset_labels",
    "telemetry_selectors",
    "unreachable_routes",
    "virtual_service_destinations",
]
