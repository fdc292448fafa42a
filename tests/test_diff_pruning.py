"""`mesh diff` traces only the journeys a change can reach (`touched_models`): for every kind
of edit, the pruned report is exactly the report that traces every journey on both sides."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from mesh.config import parse_config
from mesh.diff import journey_pairs, normalized, report, side, touched_models
from mesh.journeys import DeferredTrace, journeys
from mesh.plan import build_plan
from tests.conftest import stack_raw, with_value

Raw = dict[str, Any]


def _base() -> Raw:
    """prod with a third model, so that a change of one model leaves two untouched."""
    raw = copy.deepcopy(stack_raw("prod"))
    raw["models"]["reviews"] = copy.deepcopy(raw["models"]["sentiment"])
    raw["models"]["reviews"]["roleArn"] = "arn:aws:iam::123456789012:role/ml-mesh-reviews-reader"
    return raw


def _side(raw: Raw, edit_objects: Callable[[list[dict]], None] | None = None):
    config = parse_config(raw, "prod")
    objects = normalized(build_plan(config).objects())
    if edit_objects is not None:
        edit_objects(objects)
    return side(objects, config, raw)


def _object(objects: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _removed(raw: Raw, path: str) -> Raw:
    out = copy.deepcopy(raw)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


def _mirror_to_sentiment(objects: list[dict]) -> None:
    """Another model's routes mirror to sentiment's service: its change reaches reviews."""
    route = _object(objects, "VirtualService", "reviews")["spec"]["http"][0]
    route["mirror"] = {"host": "sentiment.ml-serving.svc.cluster.local", "subset": "v3"}


def _gateway_host(objects: list[dict]) -> None:
    _object(objects, "Gateway", "ml-gateway")["spec"]["servers"][0]["hosts"] = ["other.example"]


def _relabel_pods(objects: list[dict]) -> None:
    deployment = _object(objects, "Deployment", "sentiment-v4")
    deployment["spec"]["template"]["metadata"]["labels"]["app"] = "reviews"


def _drop_policy(objects: list[dict]) -> None:
    objects.remove(next(o for o in objects if o["kind"] == "AuthorizationPolicy"))


V5 = {"image": "tensorflow/serving:2.16.1", "modelPath": "sentiment/5", "replicas": 1}

# (edit of the config, edit of the head's objects (a code change), models touched or None: all)
EDITS: dict[str, tuple[Callable[[Raw], Raw], Callable[[list[dict]], None] | None, Any]] = {
    "weight shift": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 15),
        None,
        {"sentiment"},
    ),
    "weight to 0": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 0),
        None,
        {"sentiment"},
    ),
    "version added": (
        lambda r: with_value(
            r,
            "models.fraud.versions.v8",
            {**V5, "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "modelPath": "fraud/8"},
        ),
        None,
        {"fraud"},
    ),
    "canary removed": (lambda r: _removed(r, "models.sentiment.canary"), None, {"sentiment"}),
    "model removed": (lambda r: _removed(r, "models.reviews"), None, None),
    "caller added": (
        lambda r: with_value(r, "models.fraud.callers", ["payments/payments-api", "risk/scorer"]),
        None,
        None,
    ),
    "match rule": (
        lambda r: with_value(
            r,
            "models.sentiment.matches",
            {"beta": {"version": "v4", "headers": {"x-beta": {"exact": "1"}}}},
        ),
        None,
        {"sentiment"},
    ),
    "mirror": (
        lambda r: with_value(
            with_value(r, "models.sentiment.canary.weight", 0),
            "models.sentiment.mirror",
            {"version": "v4", "percent": 10},
        ),
        None,
        {"sentiment"},
    ),
    "model host": (
        lambda r: with_value(r, "models.sentiment.hosts", ["s.example.com"]),
        None,
        None,
    ),
    "gateway domain": (lambda r: with_value(r, "gateway.domain", "models.example.org"), None, None),
    "mtls permissive": (
        lambda r: with_value(with_value(r, "protected", False), "security.mtls", "PERMISSIVE"),
        None,
        None,
    ),
    "authorization off": (lambda r: with_value(r, "security.authorization", False), None, None),
    "egress open": (lambda r: with_value(r, "security.restrictEgress", False), None, None),
    "store region": (lambda r: with_value(r, "storage.region", "eu-central-1"), None, None),
    "tracing": (lambda r: with_value(r, "telemetry.tracing.samplingPercentage", 5), None, None),
    "platform cni": (lambda r: with_value(r, "platform.istioCni", True), None, None),
    "shift + another model mirrors to it": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 15),
        _mirror_to_sentiment,
        None,
    ),
    "shift + gateway object changed": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 15),
        _gateway_host,
        None,
    ),
    "shift + pods relabelled": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 15),
        _relabel_pods,
        None,
    ),
    "shift + a policy dropped": (
        lambda r: with_value(r, "models.sentiment.canary.weight", 15),
        _drop_policy,
        None,
    ),
    "nothing": (lambda r: r, None, set()),
}


@pytest.mark.parametrize("name", EDITS)
def test_the_pruned_report_equals_the_report_that_traces_every_journey(name):
    edit, edit_objects, expected_touched = EDITS[name]
    base = _side(_base())
    head = _side(edit(_base()), edit_objects)
    assert touched_models(base, head) == expected_touched
    pruned = report("prod", "base", base, head, set())
    full = report("prod", "base", base, head, set(), prune=False)
    assert pruned == full
    assert "journeys" in pruned[0]


def test_an_untouched_model_s_journeys_still_count_and_trace_when_read():
    base = _side(_base())
    head = _side(with_value(_base(), "models.sentiment.canary.weight", 15))
    pruned, full = journey_pairs(base, head), journey_pairs(base, head, prune=False)
    assert pruned.keys() == full.keys()
    key = next(k for k in pruned if k[0] == "reviews")
    assert pruned[key].before is pruned[key].after  # asked once, answered alike
    assert pruned[key].after.passed == full[key].after.passed
    assert pruned[key].after.trace.final() == full[key].after.trace.final()


def test_deferred_journeys_ask_the_same_questions_and_give_the_same_answers_when_read():
    config = parse_config(_base(), "prod")
    now, later = journeys(config), journeys(config, traced=False)
    assert all(isinstance(j.trace, DeferredTrace) for j in later)
    assert [(j.group, j.model, j.name, j.expect) for j in later] == [
        (j.group, j.model, j.name, j.expect) for j in now
    ]
    assert [j.passed for j in later] == [j.passed for j in now]
    assert [j.trace.final() for j in later] == [j.trace.final() for j in now]
    assert all(not isinstance(j.trace, DeferredTrace) for j in journeys(config, models={"fraud"}))
    assert {j.model for j in journeys(config, models={"fraud"})} == {"fraud"}
