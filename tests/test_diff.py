"""`python -m mesh diff`: real git commits in a temporary copy of the project, the base rendered
by the base's own code, every gate refusing what it should and nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh.config import parse_config
from mesh.diff import GATES, changed_fields, field_line, policy, policy_changes, side
from mesh.plan import build_plan
from mesh.protections import Protections, loosened, of_config, of_raw
from mesh.render import render_objects
from mesh.stackfile import load_stack
from tests.conftest import PROJECT_DIR, stack_raw

IGNORED = shutil.ignore_patterns(
    ".git", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "bench"
)
GIT_ENV = {
    "GIT_AUTHOR_NAME": "ml-mesh tests",
    "GIT_AUTHOR_EMAIL": "tests@example.com",
    "GIT_COMMITTER_NAME": "ml-mesh tests",
    "GIT_COMMITTER_EMAIL": "tests@example.com",
}


class Repo:
    """A git repository holding a copy of the project, edited and committed like a user does."""

    def __init__(self, path: Path):
        self.path = path

    def git(self, *args: str) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")

    def stack(self, name: str) -> dict[str, Any]:
        return yaml.safe_load((self.path / f"Pulumi.{name}.yaml").read_text())

    def edit(self, name: str, path: str, value: Any) -> None:
        """Like `pulumi config set --path`: `models.sentiment.canary.weight` etc.; None removes."""
        document = self.stack(name)
        node = document["config"]
        first, *rest = path.split(".")
        parts = [f"ml-mesh:{first}", *rest]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        if value is None:
            del node[parts[-1]]
        else:
            node[parts[-1]] = value
        (self.path / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    def diff(self, stack: str, base: str = "main", *allow: str) -> subprocess.CompletedProcess:
        flags = [arg for gate in allow for arg in ("--allow", gate)]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run(
            [sys.executable, "-m", "mesh", "diff", stack, "--base", base, *flags],
            cwd=self.path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )


@pytest.fixture
def repo(tmp_path) -> Repo:
    path = tmp_path / "ml-mesh"
    shutil.copytree(PROJECT_DIR, path, ignore=IGNORED, symlinks=True)
    repo = Repo(path)
    repo.git("init", "-q", "-b", "main")
    repo.commit("ml-mesh as on main")
    repo.git("checkout", "-q", "-b", "change")
    return repo


def _flat(markdown: str) -> str:
    """Markdown with runs of spaces collapsed, so table rows read `| v1 | stable | | |`."""
    return "\n".join(" ".join(line.split()) for line in markdown.splitlines())


def _refused(result: subprocess.CompletedProcess, gate: str) -> list[str]:
    prefix = f"ml-mesh: refused ({gate}): "
    return [line[len(prefix) :] for line in result.stderr.splitlines() if line.startswith(prefix)]


def test_weight_shift_reports_traffic_objects_and_routing(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 30)
    repo.commit("sentiment canary to 30%")
    result = repo.diff("prod")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "No unsafe change found." in out
    assert "| v3 | stable | 95% → 70% | | |" in _flat(out)
    assert "| v4 | canary | 5% → 30% | | |" in _flat(out)
    assert "**fraud** (unchanged, routing by ml-mesh)" in out
    assert "- `VirtualService/sentiment`" in out
    assert "  - `spec.http[http-rest].route[1].weight`: `5` → `30`" in out
    assert "**Added**" not in out and "**Removed**" not in out
    assert '  m_sentiment -->|"70%"| v_sentiment_v3' in out
    assert out.count("```mermaid") == 1


def test_an_uncommitted_edit_is_compared_too(repo):
    repo.edit("dev", "models.sentiment.canary.weight", 20)
    result = repo.diff("dev")
    assert result.returncode == 0
    assert "| v2 | canary | 10% → 20% |" in result.stdout


def test_weight_step_above_the_maximum_is_refused_in_a_protected_stack(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 40)
    repo.commit("sentiment canary to 40%")
    result = repo.diff("prod")
    assert result.returncode == 1
    assert _refused(result, "weight-step") == [
        "sentiment: v4 goes from 5% to 40% (+35 points), more than maxWeightStep 25 of this "
        "protected stack"
    ]
    assert "**Refused: 1 unsafe change(s).**" in result.stdout
    assert "| v4 | canary | 5% → 40% |" in result.stdout, "the report is printed all the same"


def test_a_gate_can_be_allowed_on_purpose(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 40)
    result = repo.diff("prod", "main", "weight-step")
    assert result.returncode == 0
    assert "> - allowed on purpose, `weight-step`: sentiment: v4 goes from 5% to 40%" in (
        result.stdout
    )


def test_the_maximum_step_is_raised_in_a_change_of_its_own_and_unprotected_stacks_are_not_gated(
    repo,
):
    repo.edit("prod", "maxWeightStep", 40)
    repo.edit("prod", "models.sentiment.canary.weight", 40)
    together = repo.diff("prod", "main", "policy-change")
    assert _refused(together, "weight-step"), "the base's 25 still holds for this change"
    repo.edit("prod", "models.sentiment.canary.weight", 5)
    assert repo.diff("prod", "main", "policy-change").returncode == 0
    repo.commit("maxWeightStep 40, on purpose")
    repo.edit("prod", "models.sentiment.canary.weight", 40)
    assert repo.diff("prod", "HEAD").returncode == 0
    repo.edit("dev", "models.sentiment.canary.weight", 100)
    assert repo.diff("dev").returncode == 0


def test_a_change_cannot_loosen_the_policy_it_is_checked_by(repo):
    repo.edit("prod", "protected", False)
    repo.edit("prod", "models.sentiment.canary.weight", 60)
    assert _refused(repo.diff("prod"), "weight-step")


def test_jump_from_0_to_100_is_refused_even_with_a_large_maximum(repo):
    repo.edit("prod", "maxWeightStep", 100)
    repo.edit("prod", "models.sentiment.canary.weight", 0)
    repo.commit("maxWeightStep 100, canary warm at 0%")
    repo.edit("prod", "models.sentiment.canary.weight", 100)
    (reason,) = _refused(repo.diff("prod", "HEAD"), "weight-step")
    assert reason.startswith("sentiment: v4 jumps from 0% to 100% of traffic in one change")


def test_swapping_stable_to_an_unrouted_version_is_a_jump_too(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 0)
    repo.commit("canary warm at 0%")
    repo.edit("prod", "models.sentiment.stable", "v4")
    repo.edit("prod", "models.sentiment.canary", None)
    assert _refused(repo.diff("prod", "HEAD"), "weight-step")[0].startswith(
        "sentiment: v4 jumps from 0% to 100%"
    )


def test_a_rollback_to_stable_is_never_refused(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 50)
    repo.commit("canary at 50% (allowed on purpose)")
    repo.edit("prod", "models.sentiment.canary.weight", 0)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "| v3 | stable | 50% → 100% |" in result.stdout


def test_removing_a_version_that_receives_traffic_is_refused(repo):
    repo.edit("dev", "models.sentiment.canary", None)
    repo.edit("dev", "models.sentiment.versions.v2", None)
    result = repo.diff("dev")
    assert result.returncode == 1
    (reason,) = _refused(result, "remove-routed-version")
    assert reason.startswith(
        "sentiment: version v2 is removed while it receives 10% of traffic at the base; "
        "requests to it would fail."
    )
    assert "Deploy twice" in reason
    removed = "**Removed** (2): `Deployment/sentiment-v2`, `PodDisruptionBudget/sentiment-v2`"
    assert removed in result.stdout


def test_removing_it_after_a_deploy_at_weight_0_is_safe(repo):
    repo.edit("dev", "models.sentiment.canary.weight", 0)
    repo.commit("first deploy: no traffic to v2")
    repo.edit("dev", "models.sentiment.canary", None)
    repo.edit("dev", "models.sentiment.versions.v2", None)
    result = repo.diff("dev", "HEAD")
    assert result.returncode == 0, result.stderr
    assert "| v2 | canary → — | 0% → — | | |" in _flat(result.stdout)


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (
            ("matches", {"beta": {"version": "v3", "headers": {"x-beta": {"exact": "1"}}}}),
            "receives the requests of match rule 'beta'",
        ),
        (("mirror", {"version": "v3", "percent": 2.5}), "receives 2.5% mirrored traffic"),
    ],
    ids=["match", "mirror"],
)
def test_a_version_reached_by_a_match_or_a_mirror_counts_as_routed(repo, extra, reason):
    repo.edit("dev", "models.sentiment.versions.v3", {"image": "a/b:1", "modelPath": "s/3"})
    repo.edit("dev", f"models.sentiment.{extra[0]}", extra[1])
    repo.commit("v3 behind a match or a mirror")
    repo.edit("dev", f"models.sentiment.{extra[0]}", None)
    repo.edit("dev", "models.sentiment.versions.v3", None)
    (found,) = _refused(repo.diff("dev", "HEAD"), "remove-routed-version")
    assert reason in found


def test_match_and_mirror_changes_show_in_the_traffic_table_and_the_graph(repo):
    repo.edit("dev", "models.sentiment.versions.v3", {"image": "a/b:1", "modelPath": "s/3"})
    repo.edit(
        "dev",
        "models.sentiment.matches",
        {"beta": {"version": "v2", "headers": {"x-beta": {"exact": "1"}}}},
    )
    repo.edit("dev", "models.sentiment.mirror", {"version": "v3", "percent": 12.5})
    result = repo.diff("dev")
    assert result.returncode == 0, result.stderr
    assert "| v2 | canary | 10% | none → beta | |" in _flat(result.stdout)
    assert "| v3 | — → none | — → 0% | | — → 12.5% |" in _flat(result.stdout)
    assert '  m_sentiment -->|"match beta"| v_sentiment_v2' in result.stdout
    assert '  m_sentiment -.->|"mirror 12.5%"| v_sentiment_v3' in result.stdout
    assert (
        "**Added** (2): `Deployment/sentiment-v3`, `PodDisruptionBudget/sentiment-v3`"
        in result.stdout
    )


def test_removing_a_whole_model_that_serves_traffic_is_refused(repo):
    repo.edit("prod", "models.fraud", None)
    (reason,) = _refused(repo.diff("prod"), "remove-routed-version")
    assert reason.startswith(
        "model 'fraud' is removed while its version v7 receives 100% of traffic at the base"
    )


def test_a_deployment_selector_change_is_refused(repo):
    workloads = repo.path / "models" / "workloads.py"
    code = workloads.read_text()
    old = 'return {"app": name, "version": version}'
    assert old in code
    workloads.write_text(code.replace(old, 'return {"app": name, "version": version, "t": "a"}'))
    repo.commit("code change: one more selector label")
    result = repo.diff("dev")
    assert result.returncode == 1
    reasons = _refused(result, "selector-change")
    assert [r.split(":")[0] for r in reasons] == [
        "Deployment/sentiment-v1",
        "Deployment/sentiment-v2",
    ]
    assert "immutable" in reasons[0]


def test_handing_a_model_to_flagger_is_an_ownership_switch(repo):
    repo.edit("dev", "models.sentiment.canary.weight", None)
    repo.edit("dev", "models.sentiment.progressive", {"stepWeight": 10})
    result = repo.diff("dev")
    assert result.returncode == 1
    (reason,) = _refused(result, "ownership-switch")
    assert reason.startswith("sentiment: routing moves from ml-mesh to flagger")
    assert not _refused(result, "remove-routed-version")
    assert "`Canary/sentiment`" in result.stdout
    assert "Flagger analysis: +10% every 1m up to 50%" in result.stdout


def test_a_new_flagger_target_version_starts_a_rollout_and_is_not_a_removal(repo):
    """The primary keeps serving the old target until Flagger promotes the new one."""
    repo.edit("prod", "models.sentiment.canary", {"version": "v4"})
    repo.edit("prod", "models.sentiment.progressive", {"stepWeight": 10})
    repo.edit(
        "prod",
        "models.sentiment.versions.v5",
        {"image": "tensorflow/serving:2.16.1", "modelPath": "sentiment/5", "replicas": 2},
    )
    repo.commit("sentiment progressive, target v4")
    repo.edit("prod", "models.sentiment.canary", {"version": "v5"})
    repo.edit("prod", "models.sentiment.versions.v4", None)
    result = repo.diff("prod", "HEAD")
    assert not _refused(result, "remove-routed-version"), result.stderr
    assert result.returncode == 0, result.stderr
    repo.edit("prod", "models.sentiment", None)  # the whole model: its primary goes too
    (reason,) = _refused(repo.diff("prod", "HEAD"), "remove-routed-version")
    assert reason.startswith("model 'sentiment' is removed while its version v4 is the Flagger")


def test_flagger_steps_above_the_maximum_are_refused_in_a_protected_stack(repo):
    repo.edit("prod", "models.sentiment.canary", {"version": "v4"})
    repo.edit("prod", "models.sentiment.progressive", {"stepWeight": 10})
    repo.commit("sentiment progressive")
    repo.edit("prod", "models.sentiment.progressive", {"stepWeights": [5, 40]})
    (reason,) = _refused(repo.diff("prod", "HEAD"), "weight-step")
    assert reason == (
        "sentiment: Flagger would shift up to 35 points per interval, more than "
        "maxWeightStep 25 of this protected stack"
    )
    repo.edit("prod", "models.sentiment.progressive", {"stepWeights": [5, 20, 40]})
    assert repo.diff("prod", "HEAD").returncode == 0


def test_a_new_stack_shows_everything_added(repo):
    shutil.copy(repo.path / "Pulumi.dev.yaml", repo.path / "Pulumi.staging.yaml")
    repo.commit("staging stack")
    result = repo.diff("staging")
    assert result.returncode == 0, result.stderr
    assert "where the stack does not exist yet" in result.stdout
    everything = len(render_objects(load_stack("dev").config, set()))
    assert f"**Added** ({everything}): `Namespace/ml-serving`" in result.stdout
    assert "**sentiment** (added, routing by ml-mesh)" in result.stdout
    assert "| v1 | — → stable | — → 90% |" in result.stdout


def test_an_unknown_ref_is_one_clear_line(repo):
    result = repo.diff("dev", "no-such-branch")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "ml-mesh: diff of stack 'dev' against no-such-branch: 'no-such-branch' is not a commit "
        "in this repository"
    ]


def test_unknown_gate_names_are_rejected(repo):
    result = repo.diff("dev", "main", "everything")
    assert result.returncode == 2
    assert "invalid choice: 'everything'" in result.stderr


def test_bad_config_in_the_working_tree_is_one_line(repo):
    repo.edit("dev", "models.sentiment.canary.weight", 120)
    result = repo.diff("dev")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(
        "ml-mesh: invalid config for stack 'dev': models.sentiment.canary.weight:"
    )


def test_a_dashboard_change_is_shown_line_by_line_inside_its_json():
    before = {"data": {"board.json": json.dumps({"panels": [{"content": "a\n| v1 | 90% |\nz"}]})}}
    after = {"data": {"board.json": json.dumps({"panels": [{"content": "a\n| v1 | 70% |\nz"}]})}}
    assert changed_fields(before, after) == [
        ("data.board.json.panels[0].content (line 2)", "| v1 | 90% |", "| v1 | 70% |")
    ]


def test_values_with_backticks_stay_inline_code():
    line = field_line("spec.text", "run `a`", "run `b`")
    assert line == "`spec.text`: `` run `a` `` → `` run `b` ``"


def test_a_caller_removed_shows_in_the_journeys_section(repo):
    repo.edit("prod", "models.fraud.callers", None)
    repo.commit("fraud: no more callers")
    result = repo.diff("prod")
    assert result.returncode == 0, result.stderr  # the base's questions show, but do not gate
    out = _flat(result.stdout)
    assert "### Journeys" in out
    assert "| fraud | gRPC from payments/payments-api | served (v7 100% :8001) | dropped" in out


def test_a_code_change_that_breaks_a_promised_journey_is_refused(repo):
    """Revert the gRPC gateway block in the working tree's code: the gateway's gRPC journeys
    then land on the REST port, and the journey-broken gate refuses the change."""
    traffic = repo.path / "mesh" / "traffic.py"
    source = traffic.read_text()
    assert "    return [mesh, gateway]\n" in source
    traffic.write_text(source.replace("    return [mesh, gateway]\n", "    return [mesh]\n"))
    repo.commit("drop the gateway block of gRPC routes")
    result = repo.diff("prod")
    assert result.returncode == 1
    refused = _refused(result, "journey-broken")
    assert any(r.startswith("sentiment: gRPC https sentiment.models.example.com") for r in refused)
    assert "| sentiment | gRPC https sentiment.models.example.com | served" in _flat(result.stdout)


# --- the effective policy of both sides, and the policy-change gate ------------------------


def _protections(raw: dict[str, Any]) -> Protections:
    """A side's protections read key by key (a base whose config this code cannot parse)."""
    return of_raw(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, (False, 25, False, None, False, False, False, ())),  # every default
        ({"protected": True}, (True, 25, False, "STRICT", True, True, True, ())),
        (
            {"protected": "true"},
            (True, 25, False, "STRICT", True, True, True, ()),
        ),  # as `config set`
        ({"protected": "false"}, (False, 25, False, None, False, False, False, ())),
        ({"protected": "yes"}, (True, 25, False, "STRICT", True, True, True, ("protected",))),
        ({"maxWeightStep": 40}, (False, 40, False, None, False, False, False, ())),
        ({"maxWeightStep": 0}, (False, 1, False, None, False, False, False, ("maxWeightStep",))),
        ({"maxWeightStep": "40"}, (False, 1, False, None, False, False, False, ("maxWeightStep",))),
        (
            {"protected": True, "security": {"mtls": "PERMISSIVE", "authorization": "false"}},
            (True, 25, False, "PERMISSIVE", False, True, True, ()),
        ),
        (
            {"security": "strict"},  # not a mapping: every key under it unreadable
            (
                False,
                25,
                False,
                "STRICT",
                True,
                True,
                True,
                (
                    "security.mtls",
                    "security.authorization",
                    "security.restrictEgress",
                    "security.networkPolicy",
                ),
            ),
        ),
        ({"images": {"requireDigests": "True"}}, (False, 25, True, None, False, False, False, ())),
    ],
    ids=[
        "defaults",
        "protected",
        "protected-string-true",
        "protected-string-false",
        "protected-unreadable",
        "max-step",
        "max-step-out-of-range",
        "max-step-string",
        "explicit-security-overrides-protected",
        "security-not-a-mapping",
        "require-digests-string",
    ],
)
def test_a_side_s_protections_are_read_as_the_program_reads_them(raw, expected):
    found = _protections(raw)
    assert (
        found.protected,
        found.max_weight_step,
        found.require_digests,
        found.mtls,
        found.authorization,
        found.restrict_egress,
        found.network_policy,
        found.unreadable,
    ) == expected


@pytest.mark.parametrize(
    ("stack", "edit"),
    [
        ("dev", {}),
        ("prod", {}),
        ("prod", {"protected": "true"}),
        ("prod", {"protected": "false"}),
        ("dev", {"protected": "false", "maxWeightStep": 10}),
        ("dev", {"security": {"mtls": "PERMISSIVE"}, "images": {"requireDigests": "true"}}),
        ("prod", {"security": {"restrictEgress": "false", "networkPolicy": False}}),
        ("prod", {"images": {"requireDigests": False}}),
    ],
)
def test_key_by_key_reading_agrees_with_the_parsed_config(stack, edit):
    """The reader for unparsable bases gives what StackConfig's own properties give."""
    raw = {**stack_raw(stack), **edit}
    assert of_raw(raw) == of_config(parse_config(raw, stack))


@pytest.mark.parametrize(
    ("base", "head", "loosened_settings"),
    [
        (
            {"protected": True},
            {"protected": False},
            [
                "protected: true -> false",
                "security.mtls: STRICT -> unset (the mesh-wide setting)",
                "security.authorization: true -> false",
                "security.restrictEgress: true -> false",
                "security.networkPolicy: true -> false",
            ],
        ),
        (
            {"protected": "true"},
            {"protected": "false", "security": {"mtls": "STRICT"}},
            [
                "protected: true -> false",
                "security.authorization: true -> false",
                "security.restrictEgress: true -> false",
                "security.networkPolicy: true -> false",
            ],
        ),
        ({}, {"maxWeightStep": 100}, ["maxWeightStep: 25 -> 100"]),  # the base's default counts
        ({"maxWeightStep": 40}, {}, []),  # lowering the step tightens
        (
            {"protected": True},
            {"protected": True, "security": {"mtls": "PERMISSIVE"}},
            [
                "security.mtls: STRICT -> PERMISSIVE",
            ],
        ),
        ({"images": {"requireDigests": True}}, {}, ["images.requireDigests: true -> false"]),
        ({"security": {"networkPolicy": True}}, {}, ["security.networkPolicy: true -> false"]),
        ({}, {"protected": True, "maxWeightStep": 5}, []),  # tightening is never a gate
        ({"maxWeightStep": "40"}, {"maxWeightStep": 40}, ["maxWeightStep: 1 -> 40"]),
    ],
    ids=[
        "unprotect",
        "unprotect-strings-keep-mtls",
        "raise-default-step",
        "lower-step",
        "weaker-mtls",
        "digests-off",
        "network-policy-off",
        "tighten",
        "unreadable-base-step",
    ],
)
def test_loosening_a_protection_is_named_before_and_after(base, head, loosened_settings):
    found = loosened(of_raw(base), of_raw(head))
    assert [f"{c.path}: {c.before} -> {c.after}" for c in found] == loosened_settings


@pytest.mark.parametrize(
    ("base", "head", "protected", "step"),
    [
        ({"protected": "true"}, {"protected": "false"}, True, 25),
        ({}, {"protected": True, "maxWeightStep": 100}, True, 25),
        ({"maxWeightStep": 10}, {"maxWeightStep": 40}, False, 10),
        ({"maxWeightStep": 40}, {"maxWeightStep": 10}, False, 10),
        ({"protected": "maybe"}, {}, True, 25),  # unreadable: its strictest value
    ],
)
def test_the_stricter_side_wins(base, head, protected, step):
    rules = policy(side([], None, base), side([], None, head))
    assert (rules.protected, rules.max_weight_step) == (protected, step)


def test_a_new_stack_has_no_base_policy_to_loosen():
    new = side([], None, {}, exists=False)
    head = side([], None, {"maxWeightStep": 100})
    assert policy(new, head).max_weight_step == 100
    assert policy_changes(new, head) == []


def test_issue_repro_raising_max_weight_step_with_the_shift_is_refused(repo):
    """maxWeightStep: 100 added in the same change that moves the canary 5 -> 80."""
    repo.edit("prod", "maxWeightStep", 100)
    repo.edit("prod", "models.sentiment.canary.weight", 50)
    result = repo.diff("prod")
    assert result.returncode == 1
    assert _refused(result, "policy-change") == [
        "maxWeightStep: 25 -> 100 loosens a protection of the base (this change is still "
        "checked by the stricter value); loosen it in a change of its own, on purpose"
    ]
    assert _refused(result, "weight-step") == [
        "sentiment: v4 goes from 5% to 50% (+45 points), more than maxWeightStep 25 of this "
        "protected stack"
    ]
    # --allow policy-change accepts the new limit, not the step it is checked against
    assert _refused(repo.diff("prod", "main", "policy-change"), "weight-step")


def test_issue_repro_protected_string_true_to_false_is_refused(repo):
    repo.edit("prod", "protected", "true")  # `pulumi config set protected true` writes a string
    repo.commit("protected as a string")
    repo.edit("prod", "protected", "false")
    repo.edit("prod", "models.sentiment.canary.weight", 80)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1
    assert [r.split(" loosens")[0] for r in _refused(result, "policy-change")] == [
        "protected: true -> false",
        "security.mtls: STRICT -> unset (the mesh-wide setting)",
        "security.authorization: true -> false",
        "security.restrictEgress: true -> false",
        "security.networkPolicy: true -> false",
    ]
    assert _refused(result, "weight-step")[0].startswith("sentiment: v4 goes from 5% to 80%")
    assert "`policy-change`: protected: true -> false" in result.stdout


def test_tightening_a_protection_is_not_gated(repo):
    repo.edit("prod", "maxWeightStep", 10)
    repo.edit("dev", "security", {"mtls": "STRICT", "authorization": True})
    for stack in ("prod", "dev"):
        result = repo.diff(stack)
        assert result.returncode == 0, result.stderr
        assert "No unsafe change found." in result.stdout


def test_a_base_this_code_cannot_parse_is_read_key_by_key(repo):
    """The base's code knows a key the head's code dropped: its config does not parse here, its
    `protected` still holds."""
    stack_py = repo.path / "mesh" / "config" / "stack.py"
    code = stack_py.read_text()
    anchor = '    namespace: DnsLabel = "ml-serving"\n'
    assert anchor in code
    stack_py.write_text(code.replace(anchor, anchor + "    legacy_note: str | None = None\n"))
    repo.edit("prod", "legacyNote", "kept by the old schema")
    repo.commit("an old schema")
    repo.git("checkout", "main", "--", "mesh/config/stack.py")
    repo.edit("prod", "legacyNote", None)
    repo.edit("prod", "protected", False)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1
    assert _refused(result, "policy-change")[0].startswith("protected: true -> false")
    assert "does not parse" not in result.stdout, "every policy key read: nothing to warn about"


# --- checks of the head, and a base that does not render ------------------------------------


def test_a_head_that_fails_mesh_checks_is_refused_and_cannot_be_allowed(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 25)
    repo.commit("25%")
    repo.edit("prod", "models.sentiment.canary.weight", 45)
    repo.commit("45%")
    repo.edit("prod", "models.sentiment.canary.weight", 55)  # over the pack's 50% cap
    result = repo.diff("prod", "HEAD", *sorted(GATES))
    assert result.returncode == 1
    assert _refused(result, "checks") == [
        "the head fails mesh checks: error POLICY/canary-weight-within-maximum "
        f"models.sentiment.canary.weight: VirtualService ml-serving/sentiment: route {route!r} "
        "sends 55% to canary 'v4', above the maximum of 50%; promote by making it the stable "
        "version"
        for route in ("grpc", "http-rest")
    ]
    assert "check errors cannot be overridden" in result.stdout
    assert "invalid choice: 'checks'" in repo.diff("prod", "HEAD", "checks").stderr


def test_a_pull_request_that_repairs_a_broken_base_shows_the_head(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 120)
    repo.commit("a broken prod on main")
    repo.edit("prod", "models.sentiment.canary.weight", 10)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 3, result.stderr
    out = _flat(result.stdout)
    assert "> **The base does not render**, so this change cannot be compared with it" in out
    assert "> ml-mesh: invalid config for stack 'prod': models.sentiment.canary.weight:" in out
    assert "Not run, as they need the base's objects: `remove-routed-version`, `weight-step`" in out
    assert "No unsafe change found." in out
    assert "| v4 | canary | 10% | | |" in out  # the head's traffic, no before
    assert "### Journeys (head)" in out and "0 promised and failing" in out
    assert "### Checks (head)" in out
    everything = len(render_objects(repo_config(repo, "prod"), set()))
    assert f"**Added** ({everything}):" in out
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ml-mesh: diff of stack 'prod': the base HEAD does not render (")


def test_a_broken_base_s_protections_still_hold(repo):
    repo.edit("prod", "models.sentiment.canary.weight", 120)
    repo.commit("a broken prod on main")
    repo.edit("prod", "models.sentiment.canary.weight", 10)
    repo.edit("prod", "protected", False)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1, "a refusal outranks the base that does not render"
    assert _refused(result, "policy-change")[0].startswith("protected: true -> false")
    assert "The base does not render" in result.stdout


def repo_config(repo: Repo, stack: str):
    return load_stack(str(repo.path / f"Pulumi.{stack}.yaml")).config


# --- match rules on protected stacks -------------------------------------------------------

V5 = {"image": "tensorflow/serving:2.16.1", "modelPath": "sentiment/5"}
BROWSERS = {"user-agent": {"regex": "Mozilla/.*"}}


def test_issue_repro_a_match_that_catches_every_request_is_refused_by_the_config(repo):
    repo.edit("prod", "models.sentiment.versions.v5", V5)
    everyone = {"version": "v5", "headers": {"user-agent": {"regex": ".*"}}}
    repo.edit("prod", "models.sentiment.matches", {"everyone": everyone})
    result = repo.diff("prod")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "ml-mesh: invalid config for stack 'prod': "
        "models.sentiment.matches.everyone.headers.user-agent.regex: regex '.*' full-matches "
        "the empty value"
    )


def test_a_match_rule_added_to_a_new_version_is_refused_in_a_protected_stack(repo):
    """Most of the traffic (every browser) to a brand-new version, the weights untouched."""
    repo.edit("prod", "models.sentiment.versions.v5", V5)
    repo.edit(
        "prod", "models.sentiment.matches", {"browsers": {"version": "v5", "headers": BROWSERS}}
    )
    result = repo.diff("prod")
    assert result.returncode == 1, result.stdout
    assert _refused(result, "match-change") == [
        "sentiment: match rule 'browsers' is added: requests with user-agent regex 'Mozilla/.*' "
        "go to v5; what share of the traffic that is cannot be known offline, so no weight "
        "step bounds it; check the share the clients send (the model's dashboard, request "
        "rate by header) and allow it on purpose"
    ]
    assert _refused(result, "weight-step") == []
    allowed = repo.diff("prod", "main", "match-change")
    assert allowed.returncode == 0, allowed.stderr
    assert "allowed on purpose, `match-change`: sentiment: match rule 'browsers'" in allowed.stdout


TESTERS = {"version": "v4", "headers": {"x-tester": {"exact": "1"}}}
BETA = {"version": "v4", "cookie": "^(.*?;)?(beta=1)(;.*)?$"}


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        (
            ("models.sentiment.matches.testers.version", "v3"),
            "sentiment: match rule 'testers' sends its requests (x-tester exact '1') to v3 "
            "instead of v4",
        ),
        (
            ("models.sentiment.matches.testers.headers", BROWSERS),
            "sentiment: match rule 'testers' now takes user-agent regex 'Mozilla/.*' (was "
            "x-tester exact '1'), to v4",
        ),
        (
            ("models.sentiment.matches.beta.priority", 1),
            "sentiment: match rules are tried in a new order (testers, beta -> beta, testers): "
            "a request that several match goes to another version",
        ),
        (("models.sentiment.matches.testers", None), None),
        (("models.sentiment.matches.testers.headers.x-tester.exact", "1"), None),
    ],
    ids=["version", "conditions", "order", "removed", "unchanged"],
)
def test_a_changed_match_rule_is_refused_and_a_removed_one_is_not(repo, edit, refused):
    """A removed rule's requests return to the weighted split, which weight-step bounds."""
    repo.edit(
        "prod", "models.sentiment.matches", {"testers": TESTERS, "beta": {**BETA, "priority": 50}}
    )
    repo.edit("prod", "models.sentiment.matches.beta.priority", 200)
    repo.commit("two A/B rules on prod")
    repo.edit("prod", *edit)
    result = repo.diff("prod", "HEAD")
    found = _refused(result, "match-change")
    if refused is None:
        assert (result.returncode, found) == (0, []), result.stderr
    else:
        assert result.returncode == 1
        assert [r.split("; what share")[0] for r in found] == [refused]


def test_match_rules_of_an_unprotected_stack_are_not_gated(repo):
    repo.edit(
        "dev", "models.sentiment.matches", {"browsers": {"version": "v2", "headers": BROWSERS}}
    )
    result = repo.diff("dev")
    assert result.returncode == 0, result.stderr
    assert _refused(result, "match-change") == []


# --- a base stack file that does not read ---------------------------------------------------


@pytest.mark.parametrize(
    "broken",
    [
        lambda text: text + "  ml-mesh:namespace: ml-serving\n",  # a duplicate key
        lambda text: text + "  ml-mesh:gateway: {domain: [\n",  # a YAML syntax error
        lambda text: "- " + text.replace("\n", "\n  "),  # a list, not a mapping
    ],
    ids=["duplicate-key", "yaml-error", "list"],
)
def test_issue_repro_an_unreadable_base_file_counts_as_strictest(repo, broken):
    """A broken prod on main, repaired in the pull request that also unprotects it: the base's
    protections used to read as the defaults (unprotected) and the diff passed, exit 3."""
    path = repo.path / "Pulumi.prod.yaml"
    good = path.read_text()
    path.write_text(broken(good))
    repo.commit("a broken prod file on main")
    path.write_text(good)
    repo.edit("prod", "protected", False)
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1, result.stdout
    refused = _refused(result, "policy-change")
    assert refused[0] == (
        "protected: the base's value cannot be read and counts as its strictest, true; the "
        "head's false may loosen it: allow it on purpose once you know the base's value "
        "(`git show <base>:<stack file>`)"
    )
    assert [r.split(":")[0] for r in refused] == [
        "protected",
        "maxWeightStep",
        "images.requireDigests",
        "security.mtls",
        "security.authorization",
        "security.restrictEgress",
        "security.networkPolicy",
    ]
    out = _flat(result.stdout)
    assert "The base does not render" in out
    assert "The base's stack file cannot be read" in out
    assert "`protected`, `maxWeightStep`, `images.requireDigests`, `security.mtls`" in out
    # The repair alone still cannot know the base's maxWeightStep or requireDigests: it is
    # allowed on purpose, and then shows the head with the base's error (exit 3).
    path.write_text(good)
    repaired = repo.diff("prod", "HEAD")
    assert [r.split(":")[0] for r in _refused(repaired, "policy-change")] == [
        "maxWeightStep",
        "images.requireDigests",
    ]
    assert repo.diff("prod", "HEAD", "policy-change").returncode == 3


# --- the policy pack's config in the same change --------------------------------------------


def _pack(repo: Repo, config: Any) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    (repo.path / "policy" / "config.json").write_text(text)


def _canary_at_45(repo: Repo) -> None:
    for weight in (25, 45):
        repo.edit("prod", "models.sentiment.canary.weight", weight)
        repo.commit(f"{weight}%")


CAP_MESSAGE = (
    "the head fails mesh checks: error POLICY/canary-weight-within-maximum "
    "models.sentiment.canary.weight: VirtualService ml-serving/sentiment: route {route!r} sends "
    "55% to canary 'v4', above the maximum of 50%; promote by making it the stable version"
)


@pytest.mark.parametrize(
    ("pack", "loosened"),
    [
        (
            {"canary-weight-within-maximum": {"maxWeight": 100}},
            ["canary-weight-within-maximum.maxWeight: 50 -> 100"],
        ),
        (
            {"all": "advisory", "canary-weight-within-maximum": {"maxWeight": 50}},
            [
                f"{policy}: mandatory -> advisory"
                for policy in (
                    "image-pinned",
                    "resources-limited",
                    "hardened-security-context",
                    "no-fault-injection",
                    "canary-weight-within-maximum",
                    "mtls-strict",
                )
            ],
        ),
        (
            {"canary-weight-within-maximum": "disabled"},
            ["canary-weight-within-maximum: mandatory -> disabled"],
        ),
    ],
    ids=["max-weight-100", "all-advisory", "cap-disabled"],
)
def test_issue_repro_loosening_the_pack_config_with_the_change_is_refused(repo, pack, loosened):
    """The canary to 55% (over the pack's 50%) with a looser policy/config.json in the same
    change: checked by the base's pack, and the loosening itself is a policy-change."""
    _canary_at_45(repo)
    repo.edit("prod", "models.sentiment.canary.weight", 55)
    _pack(repo, pack)
    result = repo.diff("prod", "HEAD", "policy-change")
    assert result.returncode == 1
    assert _refused(result, "checks") == [
        CAP_MESSAGE.format(route=r) for r in ("grpc", "http-rest")
    ]
    refused = [r.split(" loosens")[0] for r in _refused(repo.diff("prod", "HEAD"), "policy-change")]
    assert refused == [f"policy/config.json: {change}" for change in loosened]


def test_tightening_the_pack_config_is_not_gated_and_checks_with_the_head_s(repo):
    _canary_at_45(repo)
    _pack(repo, {"canary-weight-within-maximum": {"maxWeight": 40}})
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1
    assert _refused(result, "policy-change") == []
    assert [r.split(" above")[1] for r in _refused(result, "checks")] == [
        " the maximum of 40%; promote by making it the stable version"
    ] * 2


def test_a_base_pack_config_that_does_not_read_counts_as_the_pack_s_defaults(repo):
    _pack(repo, '{"canary-weight-within-maximum": {"maxWeight": 50}')
    repo.commit("a broken pack config on main")
    _pack(repo, {"canary-weight-within-maximum": {"maxWeight": 60}})
    result = repo.diff("prod", "HEAD")
    assert result.returncode == 1
    assert "> the base's policy/config.json: not valid JSON at line 1, column 51" in result.stdout
    assert [r.split(" loosens")[0] for r in _refused(result, "policy-change")] == [
        "policy/config.json: canary-weight-within-maximum.maxWeight: 50 -> 60"
    ]
    _pack(repo, {"canary-weight-within-maximum": {"maxWeight": 50}})
    repaired = repo.diff("prod", "HEAD")
    assert repaired.returncode == 3, "the repair passes every gate; the base does not render"
    assert "No unsafe change found." in repaired.stdout


def test_a_head_pack_config_that_does_not_read_is_one_line(repo):
    _pack(repo, "[]")
    result = repo.diff("prod")
    assert (result.returncode, result.stderr) == (
        2,
        "ml-mesh: invalid policy pack config: policy/config.json: the policy pack config must "
        'be a JSON object such as {"canary-weight-within-maximum": {"maxWeight": 50}}, not a '
        "list\n",
    )


# A stack with inference pools (examples/Pulumi.llm-pools.yaml): chat's two routes, `chat` on
# the model Service and `chat-pools` on the Gateway to the InferencePools, split 90/10.
POOLS = "llm-pools"


@pytest.fixture
def pools_repo(repo) -> Repo:
    shutil.copy(repo.path / "examples" / f"Pulumi.{POOLS}.yaml", repo.path / f"Pulumi.{POOLS}.yaml")
    repo.commit("the pools example as a stack")
    return repo


def test_a_pool_canary_shift_shows_both_routes_and_the_ingress_traffic(pools_repo):
    pools_repo.edit(POOLS, "models.chat.canary.weight", 25)
    result = pools_repo.diff(POOLS, "HEAD")
    assert result.returncode == 0, result.stderr
    out = _flat(result.stdout)
    assert "| v1 | stable | 90% → 75% | | |" in out
    assert "| v2 | canary | 10% → 25% | | |" in out
    for route in ("chat", "chat-pools"):
        section = out.split(f"- `HTTPRoute/{route}`\n", 1)[1].split("\n- `HTTPRoute", 1)[0]
        assert "`spec.rules[http].backendRefs[chat-v1].weight`: `90` → `75`" in section
        assert "`spec.rules[http].backendRefs[chat-v2].weight`: `10` → `25`" in section
    # The journeys trace both sides through the pools (the charts' modelled objects and
    # istiod's shadow Services): the ingress request's split moves, and the pool journeys
    # are asked of both sides.
    assert (
        "| chat | REST https chat.llm.acme.com | served (chat-v2 (pool) 10% / chat-v1 (pool) 90%"
        " :8000) | served (chat-v2 (pool) 25% / chat-v1 (pool) 75% :8000) |" in out
    )
    assert "of 49 journeys change" in out


def test_a_pool_canary_step_above_the_maximum_is_refused(pools_repo):
    pools_repo.edit(POOLS, "models.chat.canary.weight", 40)
    result = pools_repo.diff(POOLS, "HEAD")
    assert result.returncode == 1
    assert _refused(result, "weight-step") == [
        "chat: v2 goes from 10% to 40% (+30 points), more than maxWeightStep 25 of this "
        "protected stack"
    ]
    assert pools_repo.diff(POOLS, "HEAD", "weight-step").returncode == 0


def _pool_side(edit=None):
    """A side of the pools example from its objects (no git), `edit` applied to them."""
    stack = load_stack(str(PROJECT_DIR / "examples" / f"Pulumi.{POOLS}.yaml"))
    objects = build_plan(stack.config).objects()
    if edit is not None:
        edit({o["metadata"]["name"]: o for o in objects if o["kind"] == "HTTPRoute"})
    return stack.config, objects, side(objects, stack.config, stack.raw)


def _weigh(route: dict[str, Any], *weights: int) -> None:
    """The weights of v1, v2... in version order (the pool route writes the stable last)."""
    refs = sorted(route["spec"]["rules"][0]["backendRefs"], key=lambda ref: ref["name"])
    for ref, weight in zip(refs, weights, strict=True):
        ref["weight"] = weight


def test_a_base_whose_mesh_route_was_edited_is_read_by_its_ingress_split():
    """A bad base: `chat` (mesh) at 50/50, `chat-pools` (Gateway) at 90/10. The routing is the
    ingress's, so a head at 75/25 is a +15 step, not a -25 one; the head's checks name the
    disagreement of a head that has it (MESH0026), which `mesh diff` refuses."""
    from mesh.checks import check
    from mesh.diff import check_refusals, weight_steps

    _, _, base = _pool_side(lambda routes: _weigh(routes["chat"], 50, 50))
    assert {v: r.weight for v, r in base.routing["chat"].versions.items()} == {"v1": 90, "v2": 10}
    config, objects, head = _pool_side(lambda routes: _weigh(routes["chat-pools"], 60, 40))
    assert {v: r.weight for v, r in head.routing["chat"].versions.items()} == {"v1": 60, "v2": 40}
    assert [r.reason for r in weight_steps(base, head, policy(base, head))] == [
        "chat: v2 goes from 10% to 40% (+30 points), more than maxWeightStep 25 of this "
        "protected stack"
    ]
    refusals = check_refusals(check(config, objects))
    assert [r.gate for r in refusals] == ["checks"]
    assert "MESH0026" in refusals[0].reason and "chat-pools" in refusals[0].reason


def test_a_picker_release_change_shows_as_its_chart_values(pools_repo):
    """FailOpen -> FailClose changes only the picker releases' values (no rendered object):
    the diff compares the releases the base's render lists with `--charts`."""
    pools_repo.edit(POOLS, "models.chat.inferencePool", {"failureMode": "FailClose"})
    result = pools_repo.diff(POOLS, "HEAD")
    assert result.returncode == 0, result.stderr
    out = _flat(result.stdout)
    assert "**Changed** (2):" in out
    for chart in ("chat-v1", "chat-v2"):
        assert (
            f"- `Chart/{chart}`\n- `spec.values.router.inferencePool.failureMode`: "
            "`FailOpen` → `FailClose`"
        ) in out
    assert "Chart/coder-v3" not in out


def test_releases_are_not_compared_with_a_base_that_cannot_list_them():
    """A base older than `render --charts` (its Side's charts None): the head's releases are
    named as not compared, never shown as added."""
    from mesh.diff import report

    _, objects, head = _pool_side()
    plan_charts = [c.as_object() for c in build_plan(head.config).charts()]
    head = side(objects, head.config, head.raw, charts=plan_charts)
    base = side(objects, head.config, head.raw, charts=None)
    markdown, refusals = report(POOLS, "base", base, head, set())
    assert refusals == []
    assert "No object changes." in markdown
    assert (
        "The base's code cannot list its Helm releases (`mesh render --charts`): "
        "`Chart/chat-v1`, `Chart/chat-v2`, `Chart/coder-v3` not compared."
    ) in markdown
    edited = [{**c, "spec": {**c["spec"], "version": "v0.11.0"}} for c in plan_charts]
    markdown, _ = report(
        POOLS, "base", side(objects, head.config, head.raw, charts=edited), head, set()
    )
    assert "`spec.version`: `v0.11.0` → `v0.10.0`" in markdown and "not compared" not in markdown
