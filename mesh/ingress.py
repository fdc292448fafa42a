"""The shared Istio Gateway: one HTTP (and, with TLS, HTTPS) server for every model host."""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.k8s import istio_networking, metadata

COMPONENT = "ingress"


def gateway_ref(config: StackConfig) -> str:
    return f"{config.namespace}/{config.gateway.name}"


def gateway_hosts(config: StackConfig) -> list[str]:
    return sorted(host for name in config.models for host in config.model_hosts(name))


def gateway(config: StackConfig) -> dict:
    # `./host` lets only VirtualServices in this namespace bind the hosts (rule 38 of RULES.md):
    # another team's namespace cannot hijack a model's host on the shared gateway.
    hosts = [f"./{host}" for host in gateway_hosts(config)]
    tls = config.gateway.tls
    http: dict = {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}
    servers = [http]
    if tls is not None:
        if tls.https_redirect:
            http["tls"] = {"httpsRedirect": True}
        servers.append(
            {
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": list(hosts),
                # mode defaults to PASSTHROUGH, which would silently ignore the credential.
                # MUTUAL takes the client CA from the same Secret (ca.crt).
                "tls": {"mode": tls.mode, "credentialName": tls.credential_name},
            }
        )
    return {
        "apiVersion": istio_networking(config),
        "kind": "Gateway",
        "metadata": metadata(config.gateway.name, config.namespace, COMPONENT),
        "spec": {"selector": dict(config.gateway.selector), "servers": servers},
    }


def endpoint_urls(config: StackConfig, name: str) -> list[str]:
    scheme = "https" if config.gateway.tls else "http"
    return [f"{scheme}://{host}" for host in config.model_hosts(name)]
