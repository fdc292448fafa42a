"""Start-up budgets and rollout strategy: no timer gives up on a pod that is still within what
its config allows (Deployment and Canary progressDeadlineSeconds, Pulumi's await), and a GPU
rollout that needs a spare GPU is called out."""

from __future__ import annotations

import pytest

from mesh.checks import GPU_ROLLOUT_NEEDS_SPARE, ROLLOUT_TAKES_VERSION_DOWN, check
from mesh.config import ConfigError, parse_config
from mesh.plan import build_plan
from mesh.stackfile import load_stack
from tests.conftest import STACK_SOURCES, one, plan_objects, source_id, with_value, without
from tests.harness import run_program

KUBERNETES_DEFAULT_DEADLINE = 600  # Deployment and Flagger Canary progressDeadlineSeconds
PULUMI_DEFAULT_AWAIT = 600  # pulumi-kubernetes awaits a Deployment 10 minutes by default
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def _seconds(timeout: str) -> int:
    assert timeout.endswith("s"), timeout
    return int(timeout[:-1])


@pytest.fixture
def progressive(prod) -> dict:
    raw = with_value(prod, "models.sentiment.canary", {"version": "v4"})
    return with_value(raw, "models.sentiment.progressive", {"stepWeight": 5, "maxWeight": 30})


@pytest.mark.parametrize("source", STACK_SOURCES, ids=source_id)
def test_every_deployment_waits_at_least_its_models_start_up_budget(source):
    config = load_stack(source).config
    for deployment in (o for o in build_plan(config).objects() if o["kind"] == "Deployment"):
        model = config.models[deployment["metadata"]["labels"]["app"]]
        budget = model.startup_budget()
        spec = deployment["spec"]
        assert spec["progressDeadlineSeconds"] >= budget.total > KUBERNETES_DEFAULT_DEADLINE
        (server,) = spec["template"]["spec"]["containers"]
        probe = server["startupProbe"]
        window = probe["periodSeconds"] * probe["failureThreshold"]
        # The probe's window is a part of the budget, never more than it.
        assert window == budget.server_start < spec["progressDeadlineSeconds"]


def test_the_budget_adds_image_pull_download_probe_window_and_margin(dev):
    budget = parse_config(dev, "dev").models["sentiment"].startup_budget()
    # TF Serving: a small image, diskSize 10Gi copied at 32 MiB/s, the 10 minutes of the probe.
    assert (budget.image_pull, budget.download, budget.server_start) == (120, 320, 600)
    assert budget.deadline == budget.total == 120 + 320 + 600 + 60


def test_a_larger_disk_means_a_longer_download_and_deadline(dev):
    raw = with_value(dev, "models.sentiment.diskSize", "100Gi")
    deployment = one(plan_objects(raw), "Deployment", "sentiment-v1")
    assert deployment["spec"]["progressDeadlineSeconds"] == 120 + 3200 + 600 + 60


def test_triton_reads_s3_while_starting_so_its_probe_window_holds_the_download(prod):
    budget = parse_config(prod, "prod").models["fraud"].startup_budget()
    # A GPU image, no init container; diskSize 40Gi read by the server under the probe.
    assert (budget.image_pull, budget.download, budget.server_start) == (600, 0, 600 + 1280)
    probe = one(plan_objects(prod, "prod"), "Deployment", "fraud-v7")["spec"]["template"]
    assert probe["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 1880 // 5


def test_server_start_sets_the_startup_probe_window(dev):
    raw = with_value(dev, "models.sentiment.startup", {"serverStart": "20m", "imagePull": "1m"})
    deployment = one(plan_objects(raw), "Deployment", "sentiment-v2")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (5, 240)
    assert deployment["spec"]["progressDeadlineSeconds"] == 60 + 320 + 1200 + 60


def test_an_explicit_progress_deadline_above_the_budget_is_used(dev):
    raw = with_value(dev, "models.sentiment.startup", {"progressDeadline": "1h"})
    deployment = one(plan_objects(raw), "Deployment", "sentiment-v1")
    assert deployment["spec"]["progressDeadlineSeconds"] == 3600


def test_a_progress_deadline_below_the_budget_is_refused(dev):
    raw = with_value(dev, "models.sentiment.startup", {"progressDeadline": "15m"})
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "dev")
    assert refused.value.path == "models.sentiment.startup.progressDeadline"
    assert "below the start-up budget" in refused.value.problem
    assert "= 1100s" in refused.value.problem and "at least 1100s" in refused.value.problem


def test_a_download_phase_for_triton_is_refused(prod):
    raw = with_value(prod, "models.fraud.startup", {"download": "5m"})
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "prod")
    assert refused.value.path == "models.fraud.startup.download"
    assert "startup.serverStart" in refused.value.problem


def test_a_server_start_shorter_than_two_probe_periods_is_refused(dev):
    raw = with_value(dev, "models.sentiment.startup", {"serverStart": "5s"})
    with pytest.raises(ConfigError, match=r"models\.sentiment\.startup\.serverStart: "):
        parse_config(raw, "dev")


def test_the_canary_waits_exactly_as_long_as_its_target_deployment(progressive):
    objects = plan_objects(progressive, "prod")
    canary = one(objects, "Canary", "sentiment")["spec"]["progressDeadlineSeconds"]
    target = one(objects, "Deployment", "sentiment")["spec"]["progressDeadlineSeconds"]
    budget = parse_config(progressive, "prod").models["sentiment"].startup_budget()
    assert canary == target == budget.deadline > KUBERNETES_DEFAULT_DEADLINE


def test_an_explicit_deadline_reaches_the_canary_too(progressive):
    raw = with_value(progressive, "models.sentiment.startup", {"progressDeadline": "45m"})
    objects = plan_objects(raw, "prod")
    assert one(objects, "Canary", "sentiment")["spec"]["progressDeadlineSeconds"] == 2700
    assert one(objects, "Deployment", "sentiment")["spec"]["progressDeadlineSeconds"] == 2700


def test_pulumi_awaits_every_deployment_for_its_whole_rollout(prod):
    run = run_program(prod, stack="prod")
    config = parse_config(prod, "prod")
    deployments = [r for r in run.kubernetes if r.type == DEPLOYMENT]
    assert {r.name for r in deployments} == {"fraud-v7", "sentiment-v3", "sentiment-v4"}
    for registered in deployments:
        deadline = registered.object()["spec"]["progressDeadlineSeconds"]
        create = _seconds(registered.custom_timeouts["create"])
        update = _seconds(registered.custom_timeouts["update"])
        assert create > deadline > PULUMI_DEFAULT_AWAIT
        version = registered.object()["metadata"]["labels"]["version"]
        model = config.models[registered.object()["metadata"]["labels"]["app"]]
        # One pod at a time, each within one deadline: prod autoscales sentiment up to 12.
        assert update > model.pods_per_rollout(version) * deadline
    sentiment = run.resource("Deployment", "sentiment-v3")
    assert sentiment.custom_timeouts == {"create": "1160s", "update": f"{12 * 1100 + 60}s"}
    # Nothing else awaits a rollout: only Deployments get timeouts.
    assert all(not r.custom_timeouts for r in run.kubernetes if r.type != DEPLOYMENT)


def test_pulumi_awaits_flaggers_target_for_its_budget(progressive):
    run = run_program(progressive, stack="prod")
    target = run.resource("Deployment", "sentiment")
    deadline = target.object()["spec"]["progressDeadlineSeconds"]
    assert _seconds(target.custom_timeouts["create"]) > deadline
    assert _seconds(target.custom_timeouts["update"]) > 12 * deadline


def _rollout_findings(raw: dict, stack: str) -> list:
    config = parse_config(raw, stack)
    codes = {GPU_ROLLOUT_NEEDS_SPARE, ROLLOUT_TAKES_VERSION_DOWN}
    return [f for f in check(config, build_plan(config).objects()) if f.code in codes]


def test_a_gpu_version_that_surges_without_saying_so_is_warned(prod):
    raw = without(prod, "models.fraud.rollout")
    (finding,) = _rollout_findings(raw, "prod")
    assert (finding.severity, finding.code, finding.path) == (
        "warning",
        GPU_ROLLOUT_NEEDS_SPARE,
        "models.fraud.rollout",
    )
    assert finding.resource == "Deployment ml-serving/fraud-v7"
    assert "1 spare GPU" in finding.message and "'replace'" in finding.message


def test_saying_surge_acknowledges_the_spare_gpu(prod):
    raw = with_value(prod, "models.fraud.rollout", "surge")
    assert _rollout_findings(raw, "prod") == []
    strategy = one(plan_objects(raw, "prod"), "Deployment", "fraud-v7")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize("rollout", ["surge", "replace"])
def test_a_progressive_gpu_model_is_warned_whatever_its_rollout(prod, rollout):
    """Flagger runs the canary's pods beside the primary's during each analysis: that needs
    replicas x GPUs spare, which no rollout strategy saves."""
    raw = with_value(prod, "models.fraud.rollout", rollout)
    raw = with_value(raw, "models.fraud.progressive", {"stepWeight": 10})
    (finding,) = _rollout_findings(raw, "prod")
    assert (finding.code, finding.path) == (GPU_ROLLOUT_NEEDS_SPARE, "models.fraud.progressive")
    assert "3 spare GPU(s)" in finding.message  # 3 replicas x 1 GPU


def test_a_cpu_version_that_surges_is_not_warned(dev):
    assert _rollout_findings(dev, "dev") == []


def test_replace_stops_an_old_pod_before_it_starts_a_new_one(prod):
    assert parse_config(prod, "prod").models["fraud"].rollout == "replace"
    strategy = one(plan_objects(prod, "prod"), "Deployment", "fraud-v7")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
    }
    assert _rollout_findings(prod, "prod") == []


def test_replace_with_one_replica_is_refused_in_protected_stacks(prod):
    raw = with_value(prod, "models.fraud.versions.v7.replicas", 1)
    with pytest.raises(ConfigError) as refused:
        parse_config(raw, "prod")
    assert refused.value.path == "models.fraud.rollout"
    assert "only pod of version 'v7'" in refused.value.problem
    assert "at least 2 replicas" in refused.value.problem


def test_replace_with_one_replica_is_warned_elsewhere(dev):
    raw = with_value(dev, "models.sentiment.rollout", "replace")
    findings = _rollout_findings(raw, "dev")
    # Both versions receive traffic (90/10) and run one pod each.
    assert [(f.code, f.resource) for f in findings] == [
        (ROLLOUT_TAKES_VERSION_DOWN, "Deployment ml-serving/sentiment-v1"),
        (ROLLOUT_TAKES_VERSION_DOWN, "Deployment ml-serving/sentiment-v2"),
    ]
    assert all("nothing serves it for up to 1100s" in f.message for f in findings)


def test_replace_with_an_unrouted_single_pod_is_not_warned(dev):
    raw = with_value(dev, "models.sentiment.rollout", "replace")
    raw = with_value(raw, "models.sentiment.canary.weight", 0)
    findings = _rollout_findings(raw, "dev")
    assert [f.resource for f in findings] == ["Deployment ml-serving/sentiment-v1"]


def test_an_unknown_rollout_is_refused_with_the_valid_values(dev):
    raw = with_value(dev, "models.sentiment.rollout", "recreate")
    with pytest.raises(ConfigError, match=r"models\.sentiment\.rollout: .*'surge'.*'replace'"):
        parse_config(raw, "dev")
