#!/usr/bin/env bash
# A snapshot of the cluster for `mesh check --with`, on stdout, with the least privileges of
# examples/cluster/snapshot-reader.yaml:
#   examples/cluster/snapshot.sh [GATEWAY_NAMESPACE...] >cluster.yaml   (default: istio-system)
#   python -m mesh check prod --with cluster.yaml
# The objects the analyzers read, in every namespace, as `kubectl get -o yaml` prints them
# (each Istio kind named with its API group: plain `gateways` may mean Gateway API's), then the
# Secrets of the gateway namespaces as metadata, type and key names only (secret-metadata.tmpl:
# no value ever reaches the output).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kinds=gateways.networking.istio.io,virtualservices.networking.istio.io
kinds+=,destinationrules.networking.istio.io,serviceentries.networking.istio.io
kinds+=,sidecars.networking.istio.io,authorizationpolicies.security.istio.io
kinds+=,peerauthentications.security.istio.io,telemetries.telemetry.istio.io
kinds+=,services,deployments.apps,pods,namespaces,nodes
kubectl get "$kinds" --all-namespaces -o yaml
[ "$#" -gt 0 ] || set -- istio-system
for namespace in "$@"; do
  # Says that this namespace's Secrets were listed, so a Secret missing from it is missing
  # from the cluster (in a namespace not listed, mesh check cannot tell and does not judge).
  printf -- '---\napiVersion: %s\nkind: %s\nmetadata:\n  name: "%s"\n' \
    snapshot.ml-mesh.dev/v1 SecretsListed "$namespace"
  kubectl get secrets -n "$namespace" -o go-template-file="$here/secret-metadata.tmpl"
done
