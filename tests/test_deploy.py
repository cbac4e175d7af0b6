"""The Kubernetes manifests in deploy/: every core object valid against the Kubernetes schema
(kubernetes-validate, offline), and the canary route pointing at Services that exist."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler"}


def documents() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted(DEPLOY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize(("name", "doc"), [d for d in documents() if d[1]["kind"] in CORE_KINDS])
def test_every_core_object_is_valid_kubernetes(name, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, "1.33.0", strict=True)  # raises, naming the field


def test_the_manifests_hold_each_service_its_autoscaler_and_a_weighted_route():
    docs = [doc for _, doc in documents()]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for service in ("recommender", "support"):
        assert {("Deployment", service), ("Service", service), ("HorizontalPodAutoscaler", service)} <= kinds
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    for service in services.values():  # each Service selects the pods of one Deployment
        selected = [
            d
            for d in deployments
            if service["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, service["metadata"]["name"]
    (route,) = [d for d in docs if d["kind"] == "HTTPRoute"]
    (rule,) = route["spec"]["rules"]
    weights = {ref["name"]: ref["weight"] for ref in rule["backendRefs"]}
    assert weights == {"recommender": 90, "recommender-canary": 10} and set(weights) <= set(services)
    for d in deployments:  # the pods are taken out of rotation by the service's own health
        probe = d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        assert probe["httpGet"]["path"] == "/readyz"


def test_the_schema_check_refuses_a_broken_object():
    import kubernetes_validate

    (_, deployment), *_ = [d for d in documents() if d[1]["kind"] == "Deployment"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="'two' is not of type 'integer'"):
        kubernetes_validate.validate(broken, "1.33.0", strict=True)
