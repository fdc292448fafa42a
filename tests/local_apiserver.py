"""A minimal Kubernetes API server on loopback, just enough for `kubectl get` (tests of the snapshot taking).

The real kubectl, pointed at it by a kubeconfig, runs examples/cluster/snapshot.sh and the
Secret template exactly as it would against a cluster; the tests that need it skip where
kubectl is not installed.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import pytest
import yaml

KUBECTL = shutil.which("kubectl")


def needs_kubectl(test):
    """Skip `test` where kubectl is not installed; in CI (CI=true, .ci/run installs Debian's
    `kubernetes-client` when the machine has none) its absence fails the test instead."""
    if KUBECTL is not None:
        return test

    @functools.wraps(test)
    def without_kubectl(*args, **kwargs):
        message = "kubectl is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must run the snapshot tests", pytrace=False)
        pytest.skip(message)

    return without_kubectl


# (group, version, resource, kind, namespaced): what the snapshot reads, as the API serves it.
SNAPSHOT_RESOURCES = (
    ("networking.istio.io", "v1", "gateways", "Gateway", True),
    ("networking.istio.io", "v1", "virtualservices", "VirtualService", True),
    ("networking.istio.io", "v1", "destinationrules", "DestinationRule", True),
    ("networking.istio.io", "v1", "serviceentries", "ServiceEntry", True),
    ("networking.istio.io", "v1", "sidecars", "Sidecar", True),
    ("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy", True),
    ("security.istio.io", "v1", "peerauthentications", "PeerAuthentication", True),
    ("telemetry.istio.io", "v1", "telemetries", "Telemetry", True),
    ("", "v1", "services", "Service", True),
    ("apps", "v1", "deployments", "Deployment", True),
    ("", "v1", "pods", "Pod", True),
    ("", "v1", "namespaces", "Namespace", False),
    ("", "v1", "nodes", "Node", False),
)

SERVED = (*SNAPSHOT_RESOURCES, ("", "v1", "secrets", "Secret", True))


class _FakeApiServer(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for `kubectl get`: legacy discovery (/api, /apis,
    /api/v1, /apis/<group>/<version>) and lists, namespaced or across all namespaces, of the
    objects in `store` (resource -> items, as the API server returns them: built-in kinds'
    items without kind and apiVersion, custom resources' with)."""

    store: ClassVar[dict[str, list[dict]]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parts = urlparse(self.path).path.strip("/").split("/")
        if parts == ["api"]:
            return self._send({"kind": "APIVersions", "versions": ["v1"]})
        if parts == ["apis"]:
            groups = sorted({(g, v) for g, v, *_ in SNAPSHOT_RESOURCES if g})
            return self._send(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        {
                            "name": g,
                            "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                            "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                        }
                        for g, v in groups
                    ],
                }
            )
        if parts[0] == "api" and len(parts) > 1:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) > 2:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return self._send({"kind": "Status", "code": 404}, 404)
        served = [r for r in SERVED if r[:2] == (group, version)]
        group_version = f"{group}/{version}" if group else version
        if not rest:
            resources = [
                {
                    "name": r,
                    "singularName": k.lower(),
                    "namespaced": n,
                    "kind": k,
                    "verbs": ["get", "list"],
                }
                for _, _, r, k, n in served
            ]
            return self._send(
                {"kind": "APIResourceList", "groupVersion": group_version, "resources": resources}
            )
        namespace = rest[1] if rest[0] == "namespaces" and len(rest) > 2 else None
        resource = rest[2] if namespace else rest[0]
        (kind,) = [k for _, _, r, k, _ in served if r == resource]
        items = [
            o
            for o in self.store.get(resource, [])
            if namespace is None or o["metadata"].get("namespace") == namespace
        ]
        self._send(
            {
                "kind": f"{kind}List",
                "apiVersion": group_version,
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }
        )


@contextmanager
def local_api_server(tmp_path: Path) -> Iterator[tuple[dict[str, list[dict]], dict[str, str]]]:
    """The loopback API server: its store, and the environment that points kubectl at it."""
    handler = type("Handler", (_FakeApiServer,), {"store": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "reader", "user": {}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "reader"}}],
                "current-context": "fake",
            }
        )
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}
    try:
        yield handler.store, env
    finally:
        server.shutdown()
        server.server_close()
