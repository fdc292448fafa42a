"""The GitHub workflows: valid against GitHub's workflow schema, and their key steps pinned."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_DIR

WORKFLOWS = PROJECT_DIR / ".github" / "workflows"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"


def _load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True)  # YAML 1.1 reads the key `on` as a boolean
    return document


def _steps(job: dict, uses: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").startswith(f"{uses}@")]


def _run_scripts(workflow: dict) -> list[str]:
    return [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]


@pytest.fixture(scope="module")
def preview() -> dict:
    return _load("preview.yml")


@pytest.fixture(scope="module")
def deploy() -> dict:
    return _load("deploy.yml")


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_workflow_is_valid_against_githubs_schema(name):
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", WORKFLOWS / name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_every_action_is_pinned_to_a_major_version_and_permissions_are_minimal(name):
    workflow = _load(name)
    assert workflow["permissions"] == {"contents": "read"}
    for job in workflow["jobs"].values():
        assert set(job.get("permissions", {}).values()) <= {"read", "write"}
        assert set(job.get("permissions", {})) <= {"contents", "pull-requests"}
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_no_script_interpolates_event_data(name):
    """PR titles, labels and branch names reach scripts as environment variables only."""
    for script in _run_scripts(_load(name)):
        assert "${{" not in script, script


def test_preview_runs_on_pull_requests_including_label_changes(preview):
    trigger = preview["on"]["pull_request"]
    assert trigger["branches"] == ["main"]
    assert {"opened", "synchronize", "labeled", "unlabeled"} <= set(trigger["types"])


def test_preview_tests_first_with_the_ci_entry_point(preview):
    test = preview["jobs"]["test"]
    assert any(s.get("run") == "bash .ci/run" for s in test["steps"])
    assert preview["jobs"]["mesh-diff"]["needs"] == "test"
    assert preview["jobs"]["pulumi-preview"]["needs"] == "test"


def test_preview_posts_mesh_diff_to_the_summary_and_one_updated_comment_per_stack(preview):
    job = preview["jobs"]["mesh-diff"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    (checkout,) = _steps(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0
    (diff,) = [s for s in job["steps"] if s.get("id") == "diff"]
    assert 'python -m mesh diff "$STACK" --base "origin/$BASE_REF"' in diff["run"]
    assert '>>"$GITHUB_STEP_SUMMARY"' in diff["run"]
    assert "mesh-allow:*" in diff["run"]
    assert diff["env"]["BASE_REF"] == "${{ github.base_ref }}"
    (comment,) = _steps(job, "marocchino/sticky-pull-request-comment")
    assert comment["with"] == {"header": "mesh-diff-${{ matrix.stack }}", "path": "mesh-diff.md"}
    refuse = job["steps"][-1]
    assert refuse["if"] == "steps.diff.outputs.status != '0'"
    assert "exit 1" in refuse["run"]


def test_preview_runs_pulumi_preview_per_stack_with_secrets_from_the_repository(preview):
    job = preview["jobs"]["pulumi-preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "head.repo.full_name == github.repository" in job["if"]
    (pulumi,) = _steps(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    kubeconfigs = {i["stack"]: i["kubeconfig"] for i in job["strategy"]["matrix"]["include"]}
    assert kubeconfigs == {"dev": "KUBECONFIG_DEV", "prod": "KUBECONFIG_PROD"}


def test_deploy_updates_dev_then_prod_behind_an_approval_environment(deploy):
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert deploy["concurrency"]["cancel-in-progress"] is False
    jobs = deploy["jobs"]
    assert jobs["up-dev"]["needs"] == "test"
    assert jobs["up-prod"]["needs"] == "up-dev"
    assert (jobs["up-dev"]["environment"], jobs["up-prod"]["environment"]) == ("dev", "prod")
    for job, stack in (("up-dev", "dev"), ("up-prod", "prod")):
        (pulumi,) = _steps(jobs[job], "pulumi/actions")
        assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == ("up", stack)
        assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
