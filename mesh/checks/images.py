"""Container images pinned by digest (MESH0003): ml-mesh's own rule, not one of Istio's.

A tag such as `tensorflow/serving:2.16.1` names whatever the registry serves under it when a
node pulls: it can be pushed again after the pull request that named it was reviewed, and two
nodes can run different content under one tag. A digest (`repo:tag@sha256:<hex>`) names one
content; the tag beside it is kept for people and ignored by the kubelet. In protected stacks
every tag-only image is a warning; `images.requireDigests: true` makes it an error in any stack.
Unprotected stacks without the setting are not told: dev follows tags on purpose.

What counts as a digest is the policy pack's `image_has_digest` (policy/rules.py, standard
library only), so the pack and this check never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mesh.checks.findings import IMAGE_NOT_PINNED_BY_DIGEST, Finding
from mesh.checks.index import _Index
from mesh.checks.objects import _dict, _labels, _list, _spec
from mesh.checks.paths import _finding, _model
from mesh.gatewayapi.pools import PICKER_CONTAINER
from models.workloads import FETCH_CONTAINER, SERVER_CONTAINER
from policy.rules import image_has_digest


def image_digests(index: _Index) -> Iterator[Finding]:
    """Every container of every Deployment whose image has a tag but no digest."""
    config = index.config
    if config.images.require_digests:
        severity, consequence = "error", "images.requireDigests is true"
    elif config.protected:
        severity, consequence = "warning", "set images.requireDigests: true to refuse it"
    else:
        return
    for deployment in index.by_kind["Deployment"]:
        pod = _dict(_dict(_spec(deployment).get("template")).get("spec"))
        for field in ("initContainers", "containers"):
            for container in _list(pod.get(field)):
                image = str(_dict(container).get("image") or "")
                if not image or image_has_digest(image):
                    continue
                yield _finding(
                    index,
                    deployment,
                    IMAGE_NOT_PINNED_BY_DIGEST,
                    severity,
                    _image_path(index, deployment, _dict(container)),
                    f"container {_dict(container).get('name')!r}: image {image!r} is pinned by "
                    "tag only, which the registry can move to other content; pin it as "
                    f"{image}@sha256:<digest> (`crane digest {image}`); {consequence}",
                )


def _image_path(index: _Index, deployment: dict[str, Any], container: dict[str, Any]) -> str | None:
    """The key a user edits: the version's `image`, or `images.modelFetcher`."""
    name = container.get("name")
    if name == FETCH_CONTAINER:
        return "images.modelFetcher"
    if name == PICKER_CONTAINER:
        return "images.endpointPicker"
    model = _model(index, deployment)
    version = _labels(deployment).get("version")
    if name == SERVER_CONTAINER and model and version in index.config.models[model].versions:
        return f"models.{model}.versions.{version}.image"
    return None
