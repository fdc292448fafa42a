"""Bad config stops the program with one message naming the stack and the config path."""

from __future__ import annotations

import pytest

from mesh.config import ConfigError, parse_config
from tests.conftest import with_value, without
from tests.harness import try_program

# (what a user got wrong, the edit, the path the message must name, a phrase of the fix)
MISTAKES = [
    ("weight above 100", "models.sentiment.canary.weight", 150, "less than or equal to 100"),
    ("weight not whole", "models.sentiment.canary.weight", 10.5, "integer"),
    ("weight as text", "models.sentiment.canary.weight", "ten", "integer"),
    ("canary of an unknown version", "models.sentiment.canary.version", "v9", "defined: v1, v2"),
    ("canary equals stable", "models.sentiment.canary.version", "v1", "already the stable"),
    ("stable unknown", "models.sentiment.stable", "v3", "not a version of this model"),
    ("image without tag", "models.sentiment.versions.v1.image", "tensorflow/serving", "pin it"),
    (
        "image on latest",
        "models.sentiment.versions.v2.image",
        "tensorflow/serving:latest",
        "latest",
    ),
    (
        "negative replicas",
        "models.sentiment.versions.v1.replicas",
        -1,
        "greater than or equal to 0",
    ),
    (
        "no replicas for a routed version",
        "models.sentiment.versions.v1.replicas",
        0,
        "receives 90%",
    ),
    ("namespace not DNS", "namespace", "ML_Serving", "DNS-1123"),
    ("bucket with underscore", "storage.bucket", "Acme_Models", "S3 bucket name"),
    ("bucket with dots", "storage.bucket", "acme.models", "virtual-hosted"),
    ("region made up", "storage.region", "europe", "AWS region"),
    ("model path as URL", "models.sentiment.versions.v1.modelPath", "s3://b/x", "not an s3:// URL"),
    ("model path escapes", "models.sentiment.versions.v1.modelPath", "a/../b", "'..'"),
    ("gateway domain not FQDN", "gateway.domain", "models", "fully qualified"),
    ("typo in a key", "models.sentiment.canary.wieght", 5, "valid keys here: version, weight"),
    ("unknown server", "models.sentiment.server", "pytorch", "'tensorflow-serving', 'triton'"),
    ("role ARN malformed", "models.sentiment.roleArn", "reader", "IAM role ARN"),
    ("custom block on a preset", "models.sentiment.custom", {"httpPort": 8080}, "only allowed"),
    ("GPU count negative", "models.sentiment.resources.gpu", -1, "greater than or equal"),
    ("cpu not a quantity", "models.sentiment.resources.limits.cpu", "two", "quantity"),
]


@pytest.mark.parametrize(
    ("path", "value", "hint"),
    [m[1:] for m in MISTAKES],
    ids=[m[0] for m in MISTAKES],
)
def test_config_mistake_is_refused_naming_its_path_and_registers_nothing(dev, path, value, hint):
    run, error = try_program(with_value(dev, path, value), stack="dev")
    assert error is not None
    message = str(error)
    assert message.startswith(f"ml-mesh: invalid config for stack 'dev': {path}: "), message
    assert hint in message
    assert "\n" not in message
    assert run.resources == []


def test_invalid_model_and_version_names_are_reported_at_their_key(dev):
    config = with_value(dev, "models.Sentiment_Model", dev["models"]["sentiment"])
    with pytest.raises(ConfigError, match=r"models\.Sentiment_Model: 'Sentiment_Model' is not"):
        parse_config(config, "dev")
    config = with_value(dev, "models.sentiment.versions.V3", {"image": "a:1", "modelPath": "x"})
    with pytest.raises(ConfigError, match=r"models\.sentiment\.versions\.V3: 'V3' is not"):
        parse_config(config, "dev")


def test_missing_section_is_named(dev):
    with pytest.raises(ConfigError, match=r"'dev': storage: is required but missing"):
        parse_config(without(dev, "storage"), "dev")


def test_unknown_top_level_key_suggests_the_close_one_and_lists_the_valid_ones(dev):
    config = {**dev, "modles": {}}
    with pytest.raises(
        ConfigError,
        match=r"modles: unknown setting; did you mean `models`\? \(valid keys here: namespace",
    ):
        parse_config(config, "dev")


def test_two_models_cannot_share_a_gateway_host(prod):
    config = with_value(prod, "models.fraud.hosts", ["sentiment.models.example.com"])
    with pytest.raises(ConfigError, match=r"models\.fraud\.hosts\[0\]: host 'sentiment"):
        parse_config(config, "prod")


def test_several_problems_make_one_error_with_a_line_each(dev):
    config = with_value(with_value(dev, "namespace", "X"), "storage.region", "y")
    with pytest.raises(ConfigError) as caught:
        parse_config(config, "dev")
    error = caught.value
    assert [p.path for p in error.problems] == ["namespace", "storage.region"]
    assert (error.path, error.more) == ("namespace", 1)  # the first, for one-problem callers
    assert str(error).splitlines() == error.lines() and len(error.lines()) == 2


def test_custom_server_needs_its_block_and_distinct_ports(dev):
    config = with_value(dev, "models.sentiment.server", "custom")
    with pytest.raises(ConfigError, match=r"models\.sentiment\.custom: server 'custom' needs"):
        parse_config(config, "dev")
    config = with_value(config, "models.sentiment.custom", {"httpPort": 9000, "grpcPort": 9000})
    with pytest.raises(ConfigError, match=r"models\.sentiment\.custom\.grpcPort: must differ"):
        parse_config(config, "dev")


@pytest.mark.parametrize(
    "image",
    [
        "tensorflow/serving:2.16.1",
        "nvcr.io/nvidia/tritonserver:24.08-py3",
        "registry.local:5000/team/model@sha256:" + "a" * 64,
        "ghcr.io/acme/server:1.0@sha256:" + "b" * 64,
    ],
)
def test_pinned_images_are_accepted(dev, image):
    config = parse_config(with_value(dev, "models.sentiment.versions.v1.image", image), "dev")
    assert config.models["sentiment"].versions["v1"].image == image
