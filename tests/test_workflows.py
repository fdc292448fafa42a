"""The GitHub workflows: valid against GitHub's workflow schema, and their key steps pinned."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mesh.stacks import find_stacks
from tests.conftest import PROJECT_DIR, run_mesh
from tests.local_apiserver import local_api_server, needs_kubectl

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
    assert preview["jobs"]["mesh-diff"]["needs"] == ["test", "stacks"]
    assert preview["jobs"]["mesh-check"]["needs"] == ["test", "stacks"]
    assert preview["jobs"]["pulumi-preview"]["needs"] == ["test", "stacks", "mesh-check"]


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_the_stacks_come_from_the_stack_files_not_a_fixed_list(name):
    workflow = _load(name)
    (listing,) = [s for s in workflow["jobs"]["stacks"]["steps"] if s.get("id") == "list"]
    assert listing["run"] == 'python -m mesh stacks --github-output | tee -a "$GITHUB_OUTPUT"'
    for job in workflow["jobs"].values():
        matrix = job.get("strategy", {}).get("matrix")
        if matrix is not None:
            assert re.fullmatch(r"\$\{\{ fromJSON\(needs\.stacks\.outputs\.\w+\) \}\}", matrix)
            assert "stacks" in job["needs"]


def test_the_stack_listing_gives_each_stack_its_matrix_and_credentials_secret():
    result = run_mesh("stacks", "--github-output")
    assert result.returncode == 0, result.stderr
    outputs = dict(line.split("=", 1) for line in result.stdout.splitlines())
    entries = {
        "dev": {"stack": "dev", "protected": False, "kubeconfig": "KUBECONFIG_DEV"},
        "prod": {"stack": "prod", "protected": True, "kubeconfig": "KUBECONFIG_PROD"},
    }
    found = sorted(p.name for p in PROJECT_DIR.glob("Pulumi.*.yaml"))
    assert found == ["Pulumi.dev.yaml", "Pulumi.prod.yaml"]
    assert json.loads(outputs["all"]) == {"include": [entries["dev"], entries["prod"]]}
    assert json.loads(outputs["protected"]) == {"include": [entries["prod"]]}
    assert json.loads(outputs["unprotected"]) == {"include": [entries["dev"]]}
    assert (outputs["has-protected"], outputs["has-unprotected"]) == ("true", "true")


@pytest.mark.parametrize(
    ("name", "text", "protected"),
    [
        ("eu-prod.2", "config:\n  ml-mesh:protected: 'true'\n", True),
        ("staging", "config:\n  ml-mesh:protected: false\n", False),
        ("broken", "config: [\n", True),  # unreadable: the stricter choice
        ("old", "config:\n  ml-mesh:protected: maybe\n", True),
    ],
)
def test_a_new_stack_file_is_listed_with_its_secret_name(tmp_path, name, text, protected):
    (tmp_path / f"Pulumi.{name}.yaml").write_text(text)
    (stack,) = find_stacks(tmp_path)
    assert (stack.name, stack.protected) == (name, protected)
    assert stack.kubeconfig_secret == "KUBECONFIG_" + name.upper().replace("-", "_").replace(
        ".", "_"
    )


def test_preview_posts_mesh_diff_to_the_summary_and_one_updated_comment_per_stack(preview):
    job = preview["jobs"]["mesh-diff"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.stacks.outputs.all) }}"
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


def test_a_base_that_does_not_render_fails_the_check_unless_accepted_by_label(preview, tmp_path):
    """Exit 3 is shown and fails, like a refusal, unless the PR has the label
    mesh-accept-unrendered-base; any other non-zero exit fails. Run the step's script."""
    (refuse,) = [
        s for s in preview["jobs"]["mesh-diff"]["steps"] if s.get("name") == "Refuse unsafe changes"
    ]
    assert "exit 3" not in refuse["run"]

    def run(status: str, labels: str) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/bin:/bin", "STATUS": status, "LABELS": labels}
        return subprocess.run(
            ["bash", "-e", "-c", refuse["run"]],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )

    assert run("1", "mesh-accept-unrendered-base").returncode == 1
    assert run("2", "").returncode == 1
    base = run("3", "mesh-allow:weight-step")
    assert base.returncode == 1
    assert "::error::the base does not render" in base.stdout
    accepted = run("3", "mesh-allow:weight-step mesh-accept-unrendered-base")
    assert accepted.returncode == 0
    assert "::warning::the base does not render" in accepted.stdout


def test_preview_runs_pulumi_preview_per_stack_with_secrets_from_the_repository(preview):
    job = preview["jobs"]["pulumi-preview"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.stacks.outputs.all) }}"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert "head.repo.full_name == github.repository" in job["if"]
    (pulumi,) = _steps(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    (credentials,) = [s for s in job["steps"] if s.get("name") == "Cluster credentials"]
    assert credentials["env"]["KUBECONFIG_DATA"] == "${{ secrets[matrix.kubeconfig] }}"


def _pack_venv_step(job: dict) -> dict:
    (step,) = [s for s in job["steps"] if "policy/venv" in s.get("run", "")]
    return step


def test_protected_stacks_are_previewed_with_the_policy_pack_and_its_config(preview):
    """pulumi/actions@v7 inputs `policyPacks` and `policyPackConfigs` (its action.yml); the
    pack runs in policy/venv, the virtualenv policy/PulumiPolicy.yaml names."""
    job = preview["jobs"]["pulumi-preview"]
    (pulumi,) = _steps(job, "pulumi/actions")
    assert pulumi["with"]["policyPacks"] == "${{ matrix.protected && 'policy' || '' }}"
    assert pulumi["with"]["policyPackConfigs"] == (
        "${{ matrix.protected && 'policy/config.json' || '' }}"
    )
    venv = _pack_venv_step(job)
    assert venv["if"] == "matrix.protected"
    assert "policy/venv/bin/python -m pip install -r policy/requirements.txt" in venv["run"]
    pack = yaml.safe_load((PROJECT_DIR / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"]["options"]["virtualenv"] == "venv"
    assert (PROJECT_DIR / "policy" / "config.json").is_file()


def test_deploy_updates_unprotected_stacks_then_protected_ones_behind_their_environments(deploy):
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert deploy["concurrency"]["cancel-in-progress"] is False
    jobs = deploy["jobs"]
    assert jobs["up-unprotected"]["needs"] == ["test", "stacks"]
    assert jobs["up-protected"]["needs"] == ["test", "stacks", "up-unprotected"]
    assert "!failure()" in jobs["up-protected"]["if"]
    for job, matrix in (("up-unprotected", "unprotected"), ("up-protected", "protected")):
        assert jobs[job]["environment"] == "${{ matrix.stack }}"
        assert (
            jobs[job]["strategy"]["matrix"] == f"${{{{ fromJSON(needs.stacks.outputs.{matrix}) }}}}"
        )
        assert f"needs.stacks.outputs.has-{matrix} == 'true'" in jobs[job]["if"]
        (pulumi,) = _steps(jobs[job], "pulumi/actions")
        assert (pulumi["with"]["command"], pulumi["with"]["stack-name"]) == (
            "up",
            "${{ matrix.stack }}",
        )
        assert pulumi["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
    (pulumi,) = _steps(jobs["up-protected"], "pulumi/actions")
    assert (pulumi["with"]["policyPacks"], pulumi["with"]["policyPackConfigs"]) == (
        "policy",
        "policy/config.json",
    )
    assert "policyPacks" not in _steps(jobs["up-unprotected"], "pulumi/actions")[0]["with"]
    assert "policy/requirements.txt" in _pack_venv_step(jobs["up-protected"])["run"]


def _named(job: dict, prefix: str) -> dict:
    (step,) = [s for s in job["steps"] if s.get("name", "").startswith(prefix)]
    return step


def test_preview_checks_each_stack_against_a_snapshot_of_its_cluster_before_pulumi_preview(
    preview,
):
    job = preview["jobs"]["mesh-check"]
    assert job["strategy"]["matrix"] == "${{ fromJSON(needs.stacks.outputs.all) }}"
    assert "permissions" not in job  # the workflow's: contents: read
    assert "if" not in job, "forks too: they are checked without the snapshot"
    snapshot = _named(job, "Snapshot of the cluster")
    assert snapshot["env"]["KUBECONFIG_DATA"] == "${{ secrets[matrix.kubeconfig] }}"
    assert (
        'bash examples/cluster/snapshot.sh "$namespace" >"$RUNNER_TEMP/cluster.yaml"'
        in (snapshot["run"])
    )
    check = _named(job, "mesh check")
    assert check["env"]["TAKEN"] == "${{ steps.snapshot.outputs.taken }}"
    assert 'python -m mesh check "$STACK" "${snapshot[@]}"' in check["run"]
    assert '>>"$GITHUB_STEP_SUMMARY"' in check["run"]


def test_the_cluster_snapshot_and_its_credentials_are_never_uploaded(preview):
    """No artifact upload anywhere in the workflow; the snapshot and the kubeconfig live in
    the runner's temporary directory, readable by the runner's user only, and are removed."""
    for job in preview["jobs"].values():
        assert not _steps(job, "actions/upload-artifact"), job
        for step in job["steps"]:
            assert "cluster.yaml" not in json.dumps(step.get("with", {}))
    script = _named(preview["jobs"]["mesh-check"], "Snapshot of the cluster")["run"]
    assert 'install -m 600 /dev/null "$RUNNER_TEMP/cluster.yaml"' in script
    assert 'rm -f "$RUNNER_TEMP/kubeconfig"' in script
    assert (
        'rm -f "$RUNNER_TEMP/cluster.yaml"'
        in _named(preview["jobs"]["mesh-check"], "mesh check")["run"]
    )


def _run_mesh_check_job(preview: dict, tmp_path: Path, stack: str, kubeconfig: str) -> dict:
    """The mesh-check job's two scripts, in order, as the runner runs them (bash -e), with
    GitHub's files: what the check exited with, printed, and wrote to the summary."""
    job = preview["jobs"]["mesh-check"]
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    output, summary = tmp_path / "output", tmp_path / "summary"
    output.touch()
    summary.touch()
    path = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"
    base = {
        "PATH": path,
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(temp),
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "STACK": stack,
    }
    results = []
    for step, extra in (
        (_named(job, "Snapshot of the cluster"), {"KUBECONFIG_DATA": kubeconfig}),
        (
            _named(job, "mesh check"),
            {"SECRET_NAME": f"KUBECONFIG_{stack.upper()}", "TAKEN": ""},
        ),
    ):
        if "TAKEN" in extra:
            outputs = dict(x.split("=", 1) for x in output.read_text().splitlines())
            extra["TAKEN"] = outputs.get("taken", "")
        results.append(
            subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=PROJECT_DIR,
                env={**base, **extra},
                capture_output=True,
                text=True,
                check=False,
                timeout=180,
            )
        )
        if results[-1].returncode != 0:
            break
    return {
        "steps": results,
        "summary": summary.read_text(),
        "outputs": output.read_text(),
        "left": sorted(p.name for p in temp.iterdir()),
    }


def test_without_credentials_the_stack_is_checked_alone_and_the_run_says_so(preview, tmp_path):
    ran = _run_mesh_check_job(preview, tmp_path, "dev", kubeconfig="")
    snapshot, check = ran["steps"]
    assert snapshot.returncode == 0 and ran["outputs"] == "taken=false\n"
    assert check.returncode == 0, check.stdout + check.stderr
    notice = (
        "::notice::mesh check of stack dev ran alone: no cluster credentials (the secret "
        "KUBECONFIG_DEV is not available, as in pull requests from forks), so nothing in the "
        "cluster was checked"
    )
    assert notice in check.stdout
    assert ran["summary"].startswith("## ml-mesh check: stack `dev`, alone: no cluster credentials")
    assert "# stack dev: 13 objects checked: 0 errors, 0 warnings, 0 info" in ran["summary"]
    assert "snapshot of" not in ran["summary"]


@needs_kubectl
def test_with_credentials_the_snapshot_is_taken_and_a_conflict_fails_the_check(preview, tmp_path):
    conflicting = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "search", "namespace": "team-b"},
        "spec": {
            "hosts": ["sentiment.ml-serving.svc.cluster.local"],
            "http": [
                {"route": [{"destination": {"host": "sentiment.ml-serving.svc.cluster.local"}}]}
            ],
        },
    }
    with local_api_server(tmp_path) as (store, env):
        store["virtualservices"] = [conflicting]
        store["secrets"] = [
            {
                "metadata": {"name": "models-example-com-tls", "namespace": "istio-system"},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "Q0VSVA==", "tls.key": "U0VDUkVU"},
            }
        ]
        kubeconfig = Path(env["KUBECONFIG"]).read_text()
        ran = _run_mesh_check_job(preview, tmp_path, "prod", kubeconfig=kubeconfig)
    snapshot, check = ran["steps"]
    assert snapshot.returncode == 0, snapshot.stdout + snapshot.stderr
    assert ran["outputs"] == "taken=true\n"
    assert check.returncode == 1, check.stdout + check.stderr
    assert "::notice::" not in check.stdout
    assert ran["summary"].startswith(
        "## ml-mesh check: stack `prod`, against a snapshot of its cluster"
    )
    assert (
        "Error [IST0109] (VirtualService ml-serving/sentiment models.sentiment.hosts)"
        in (ran["summary"])
    )
    assert "U0VDUkVU" not in ran["summary"] + check.stdout
    assert ran["left"] == [], "neither the kubeconfig nor the snapshot is left behind"
