"""The ingress Gateway of `routing: gateway-api` and its HTTP -> HTTPS redirect.

A Gateway of class `istio` is served by pods Istio deploys for it (Deployment and
ServiceAccount `<name>-istio` in the Gateway's namespace: pilot/pkg/config/kube/gatewaycommon/
deploymentcontroller.go), so the Gateway lives in `gateway.namespace`, as in Istio's ingress
docs, and the routes stay in the serving namespace.

Listeners carry no hostname: each route names its hosts. `allowedRoutes` admits HTTPRoutes of
the serving namespace only (the Gateway API form of the Istio Gateway's `./<host>`): a route
of another namespace cannot attach to this Gateway and take a model's host. Istio resolves
`from: Selector` against the namespaces' labels (conversion.go `namespacesFromSelector`);
`kubernetes.io/metadata.name` is the label Kubernetes puts on every namespace.
"""

from __future__ import annotations

from mesh.config import StackConfig
from mesh.gatewayapi.common import GATEWAY_API, GROUP
from mesh.ingress import gateway_hosts
from mesh.k8s import metadata

COMPONENT = "ingress"
HTTP_LISTENER = "http"
HTTPS_LISTENER = "https"
REDIRECT_SUFFIX = "-https-redirect"


def _allowed_routes(config: StackConfig) -> dict:
    return {
        "namespaces": {
            "from": "Selector",
            "selector": {"matchLabels": {"kubernetes.io/metadata.name": config.namespace}},
        },
        "kinds": [{"group": GROUP, "kind": "HTTPRoute"}],
    }


def _secret_ref(name: str) -> dict:
    return {"group": "", "kind": "Secret", "name": name}


def listeners(config: StackConfig) -> list[dict]:
    """`http` on 80 and, with gateway.tls, `https` on 443 terminating TLS with the credential
    Secret (in the Gateway's namespace, like Istio's `credentialName`: no ReferenceGrant)."""
    found = [
        {
            "name": HTTP_LISTENER,
            "port": 80,
            "protocol": "HTTP",
            "allowedRoutes": _allowed_routes(config),
        }
    ]
    tls = config.gateway.tls
    if tls is not None:
        found.append(
            {
                "name": HTTPS_LISTENER,
                "port": 443,
                "protocol": "HTTPS",
                "tls": {"mode": "Terminate", "certificateRefs": [_secret_ref(tls.credential_name)]},
                "allowedRoutes": _allowed_routes(config),
            }
        )
    return found


def frontend_tls(config: StackConfig) -> dict | None:
    """`spec.tls` for gateway.tls.mode MUTUAL: client certificates verified against the CA of
    the credential Secret, as the Istio Gateway's MUTUAL does.

    Client certificate validation is Gateway `spec.tls.frontend` (GEP-91, standard channel
    since Gateway API v1.5, so in what Istio 1.30 serves). Istio turns `frontend.default.
    validation.caCertificateRefs` into server TLS mode MUTUAL with that CA
    (conversion.go `resolveGatewayTLS`, `buildTLS`: one reference, a Secret or ConfigMap) and
    reads the CA from the Secret's `ca.crt` or `cacert` key (pilot/pkg/credentials/kube/
    secrets.go `ExtractRoot`): the key a MUTUAL credential Secret already holds. Istio ignores
    `validation.mode` (a TODO in buildTLS), so it is left at its default, AllowValidOnly: a
    client without a valid certificate is refused, as MUTUAL does."""
    tls = config.gateway.tls
    if tls is None or tls.mode != "MUTUAL":
        return None
    return {
        "frontend": {
            "default": {
                "validation": {
                    "caCertificateRefs": [_secret_ref(tls.credential_name)],
                    "mode": "AllowValidOnly",
                }
            }
        }
    }


def gateway(config: StackConfig) -> dict:
    spec: dict = {"gatewayClassName": "istio", "listeners": listeners(config)}
    tls = frontend_tls(config)
    if tls is not None:
        spec["tls"] = tls
    return {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": metadata(config.gateway.name, config.gateway.namespace, COMPONENT),
        "spec": spec,
    }


def route_sections(config: StackConfig) -> list[str]:
    """The listeners a model's route attaches to: `https` alone when plain HTTP only redirects
    (the redirect route owns `http`), both with TLS but no redirect (plain HTTP is served as
    well), `http` without TLS. A listener no route attaches to answers 404."""
    tls = config.gateway.tls
    if tls is None:
        return [HTTP_LISTENER]
    return [HTTPS_LISTENER] if tls.https_redirect else [HTTP_LISTENER, HTTPS_LISTENER]


def gateway_parents(config: StackConfig) -> list[dict]:
    """The parentRefs of a model route on the ingress Gateway, one per listener of
    `route_sections` (two refs to one Gateway need distinct sectionNames, a CEL rule)."""
    return [
        {
            "group": GROUP,
            "kind": "Gateway",
            "name": config.gateway.name,
            "namespace": config.gateway.namespace,
            "sectionName": section,
        }
        for section in route_sections(config)
    ]


def redirect_route(config: StackConfig) -> dict | None:
    """With gateway.tls.httpsRedirect: an HTTPRoute on the `http` listener answering every
    model host with a 301 to https, port 443 (Istio: a `redirect` route; conversion.go
    `createRedirectFilter` derives the port from the scheme when none is given), and no backendRefs (CEL: RequestRedirect must not be used
    together with backendRefs).

    It lives in the serving namespace, not the Gateway's: the listeners admit routes of the
    serving namespace only, so a route in the Gateway's namespace would not attach. The model
    routes bind `https` only, so this is all port 80 serves."""
    tls = config.gateway.tls
    if tls is None or not tls.https_redirect:
        return None
    parent = {**gateway_parents(config)[0], "sectionName": HTTP_LISTENER}
    return {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": metadata(
            f"{config.gateway.name}{REDIRECT_SUFFIX}", config.namespace, COMPONENT
        ),
        "spec": {
            "parentRefs": [parent],
            "hostnames": gateway_hosts(config),
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ],
                }
            ],
        },
    }


def ingress_objects(config: StackConfig) -> list[dict]:
    redirect = redirect_route(config)
    return [gateway(config), *([redirect] if redirect is not None else [])]
