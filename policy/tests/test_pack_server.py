"""The pack as the Pulumi engine runs it: `__main__.py` started as a program (the way
`python -m pulumi.policy` does, with runpy), then asked over its gRPC analyzer API. Proves the
wiring (names, enforcement level, config, properties decoding) without the Pulumi CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

PACK_DIR = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60  # a guard against a hung pack, not a measurement


@pytest.fixture(scope="module")
def analyzer() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    process = subprocess.Popen(
        [sys.executable, "-u", "-c", "import runpy; runpy.run_path('.', run_name='__main__')"],
        cwd=PACK_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the pack did not start: {process.stderr.read()}"
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT_SECONDS)
        yield analyzer_pb2_grpc.AnalyzerStub(channel)
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=START_TIMEOUT_SECONDS)


def _struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def _deployment(image: str) -> dict:
    container = {
        "name": "server",
        "image": image,
        "resources": {
            "requests": {"cpu": "1", "memory": "1Gi"},
            "limits": {"cpu": "2", "memory": "2Gi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sentiment-v1", "namespace": "ml-serving"},
        "spec": {"template": {"spec": {"containers": [container]}}},
    }


def _analyze(analyzer, resource_type: str, props: dict) -> list[analyzer_pb2.AnalyzeDiagnostic]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type,
        properties=_struct(props),
        urn=f"urn:pulumi:prod::ml-mesh::{resource_type}::{props['metadata']['name']}",
        name=props["metadata"]["name"],
    )
    return list(analyzer.Analyze(request).diagnostics)


def test_the_pack_describes_its_policies(analyzer):
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "ml-mesh-protected"
    assert {p.name for p in info.policies} == {
        "image-pinned",
        "resources-limited",
        "hardened-security-context",
        "mtls-strict",
        "no-fault-injection",
        "canary-weight-within-maximum",
    }
    assert {p.enforcementLevel for p in info.policies} == {analyzer_pb2.MANDATORY}
    canary = next(p for p in info.policies if p.name == "canary-weight-within-maximum")
    assert canary.configSchema.properties["maxWeight"]["default"] == 50


def test_a_latest_image_is_a_mandatory_violation(analyzer):
    (diagnostic,) = _analyze(analyzer, "kubernetes:apps/v1:Deployment", _deployment("a/b:latest"))
    assert diagnostic.policyName == "image-pinned"
    assert diagnostic.enforcementLevel == analyzer_pb2.MANDATORY
    assert "'a/b:latest'" in diagnostic.message


def test_a_compliant_deployment_passes(analyzer):
    assert _analyze(analyzer, "kubernetes:apps/v1:Deployment", _deployment("a/b:1.0")) == []


def test_the_canary_maximum_comes_from_policy_config(analyzer):
    vs = {
        "metadata": {"name": "sentiment", "annotations": {"ml-mesh.io/canary": "v2"}},
        "spec": {
            "http": [
                {
                    "route": [
                        {"destination": {"host": "s", "subset": "v1"}, "weight": 80},
                        {"destination": {"host": "s", "subset": "v2"}, "weight": 20},
                    ]
                }
            ]
        },
    }
    resource_type = "kubernetes:networking.istio.io/v1:VirtualService"
    assert _analyze(analyzer, resource_type, vs) == []
    analyzer.Configure(
        analyzer_pb2.ConfigureAnalyzerRequest(
            policyConfig={
                "canary-weight-within-maximum": analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.MANDATORY, properties=_struct({"maxWeight": 10})
                )
            }
        )
    )
    try:
        (diagnostic,) = _analyze(analyzer, resource_type, vs)
        assert diagnostic.policyName == "canary-weight-within-maximum"
        assert "20%" in diagnostic.message and "maximum of 10%" in diagnostic.message
    finally:
        analyzer.Configure(analyzer_pb2.ConfigureAnalyzerRequest())  # back to the defaults
