"""The install from manifests/, proven against a real kube-apiserver + etcd: the webhook runs
locally with TLS as its own restricted identity, and pods are created through the API server."""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient

from tests.cluster import (
    EXAMPLES,
    ROOT,
    ControlPlane,
    Installed,
    admin_kustomization,
    install_other_crds,
    pod_file,
)
from tests.golden import CASES as GOLDEN_CASES
from tests.golden import golden_index, load_case
from tests.primehub import deployment_pod
from tests.procs import BIN, free_port, wait_until
from tests.promtext import samples
from tests.reviews import pod_review
from tests.scenarios import scenario_pod
from tests.settings_table import SECRET, TABLE
from tests.settings_table import setting as table_setting
from tests.test_fuzz import SEED as FUZZ_SEED
from tests.test_fuzz import SETTINGS as FUZZ_SETTINGS
from tests.test_fuzz import edit as fuzz_edit
from tests.webhookproc import WebhookProcess
from webhook.config import Config, parse_config
from webhook.kube import ApiError
from webhook.metrics import Metrics
from webhook.pods import Route, route
from webhook.server import create_app
from webhook.settings import rules
from webhook.settings.crd import render
from webhook.settings.index import SettingsIndex
from webhook.settings.model import SettingError, parse_setting
from webhook.tls import make_ca, make_serving_cert, write_atomic
from webhook.webhookconfig import webhook_configuration

pytestmark = pytest.mark.cluster
GOLDEN_PODS = [load_case(path)["pod"] for path in GOLDEN_CASES]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_the_kustomize_builds_pass_server_side_dry_run(
    installed: Installed, tmp_path: Path
) -> None:
    """Every overlay, and the certificate overlays with the KServe component, checked by the API
    server against the real CRDs of cert-manager, of the Prometheus operator and of KServe (as
    their Go modules ship them: tests/controlplane/crds.sh)."""
    install_other_crds(installed.cp)
    for overlay in (
        "base",
        "overlays/self-managed",
        "overlays/cert-manager",
        "overlays/monitoring",
    ):
        r = installed.cp.kubectl(
            "apply", "--dry-run=server", "-k", str(ROOT / "manifests" / overlay), check=False
        )
        assert r.returncode == 0, f"{overlay}: {r.stderr}"
    for overlay in ("overlays/self-managed", "overlays/cert-manager"):  # with KServe's
        # (the installed Job's image cannot change: the renaming is test_manifests.py's)
        folder = admin_kustomization(tmp_path / overlay, overlay, ["components/kserve"])
        r = installed.cp.kubectl("apply", "--dry-run=server", "-k", str(folder), check=False)
        assert r.returncode == 0, f"{overlay} with components/kserve: {r.stderr}"
        assert "clusterstoragecontainer.serving.kserve.io/mlflow-models created" in r.stdout
    monitoring = installed.cp.kubectl(
        "apply", "--dry-run=server", "-k", str(ROOT / "manifests" / "overlays" / "monitoring")
    ).stdout
    assert (
        "servicemonitor.monitoring.coreos.com/mlflow-webhook created (server dry run)" in monitoring
    )
    assert (
        "prometheusrule.monitoring.coreos.com/mlflow-webhook created (server dry run)" in monitoring
    )


MONITORING = ROOT / "manifests" / "components" / "monitoring"


def test_the_alerts_and_the_dashboard_select_series_the_real_programs_expose(
    installed: Installed, tmp_path: Path
) -> None:
    """The PrometheusRule and the Grafana dashboard, loaded by Prometheus' own rule loader
    (tests/controlplane/promrules: PromQL, labels, annotation templates); every series they
    select, with its label values, is one that the webhook's /metrics or the real API server's
    /metrics shows once the webhook has been down for a notebook and a model pod (the API
    server's fail-open and calling-error counters) and has denied a pod; `up` comes from the
    ServiceMonitor, whose job is the Service's name."""
    installed.webhook.stop()
    try:  # the API server lets a notebook in without us, and refuses a model pod
        installed.create(pod_file("notebook", unique=True), dry_run=True)
        installed.create(pod_file("deployment", unique=True), dry_run=True)
    finally:
        installed.webhook.start(installed.trusted_ca())
    denied = pod_file("deployment", unique=True)
    denied["metadata"]["annotations"]["mlflow.primehub.io/model-uri"] = "s3://bucket/model"
    assert installed.create(denied, dry_run=True).status_code == 403
    assert installed.create(pod_file("notebook", unique=True), dry_run=True).status_code == 201

    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    panels = [
        target["expr"]
        for panel in json.loads((MONITORING / "mlflow-webhook.json").read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    dashboard = {
        "name": "dashboard",
        "rules": [{"record": f"mlflow_webhook:panel_{i}", "expr": e} for i, e in enumerate(panels)],
    }
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": [*rule["spec"]["groups"], dashboard]}))
    checked = subprocess.run([str(BIN / "promrules"), str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    selectors = [json.loads(line) for line in checked.stdout.splitlines()]
    assert len(panels) >= 10 and len(selectors) >= len(panels)

    ours = requests.get(f"{installed.webhook.url}/metrics", verify=installed.trusted_ca()).text
    exposed = [
        (name, labels)
        for name, labels, _ in samples(ours) + samples(installed.cp.request("GET", "/metrics").text)
    ]
    base = yaml.safe_load_all((ROOT / "manifests" / "base" / "service.yaml").read_text())
    service = next(d for d in base if d["kind"] == "Service")
    missing = []
    for sel in selectors:
        if sel["metric"] == "up":
            assert sel["labels"] == {"job": service["metadata"]["name"]}, sel
            continue
        if not any(
            name == sel["metric"] and sel["labels"].items() <= labels.items()
            for name, labels in exposed
        ):
            missing.append(sel)
    assert missing == []


def test_the_crd_is_generated_from_the_rules_the_webhook_parses_with() -> None:
    assert (ROOT / "manifests" / "base" / "crd.yaml").read_text() == render(), (
        "run: python -m webhook.settings.crd > manifests/base/crd.yaml"
    )


def judged_twice(cp: ControlPlane, obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """The CRD's refusal (its schema and CEL rules, as `kubectl apply` sends it: strict field
    validation) and the parser's field, each None for acceptance. A refusal from our validating
    webhook counts as the CRD's acceptance: it is the parser's own verdict, not the CRD's."""
    cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": "table"}})
    obj = {**obj, "metadata": {**obj["metadata"], "namespace": "table"}}  # no group claimed
    path = "/apis/mlflow.primehub.io/v1alpha1/namespaces/table/mlflowsettings"
    reply = cp.request("POST", path, obj, dryRun="All", fieldValidation="Strict")
    assert SECRET not in reply.text, f"the API server showed a secret: {reply.text}"
    crd = None if reply.status_code == 201 else reply.json().get("message", "")
    if crd is not None and "admission webhook" in crd:
        crd = None
    try:
        parse_setting(obj, "table")
        return crd, None
    except SettingError as e:
        return crd, e.path


def test_the_api_server_judges_the_table_of_settings_as_the_webhook_does(
    installed: Installed,
) -> None:
    """One table, two judges: the CRD's schema and CEL rules, and the webhook's parser."""
    disagreements = []
    for i, (changes, field) in enumerate(TABLE):
        crd, parser = judged_twice(installed.cp, table_setting(changes, name=f"table-{i}"))
        if (crd is None) != (parser is None) or (crd is not None and field not in crd):
            disagreements.append((changes, crd, parser))
    assert disagreements == []


def test_generated_settings_get_one_verdict_from_the_api_server_and_the_parser(
    installed: Installed,
) -> None:
    """The table holds the cases we thought of; these are the ones we did not: settings made
    from the golden and example ones by random edits of their spec (tests/test_fuzz.py), each
    judged by the CRD and by the parser. Where the CRD refuses for a broken rule (not an unknown
    field, which it reports by a walk of its own), the two name the same field or one within
    the other. Strings with a lone surrogate are left out: the API server stores U+FFFD in
    their place (webhook/settings/schema.py). 40 of 1,500 disagreed before the parser took
    its types, lengths and fields from the CRD's schema."""
    rng = random.Random(FUZZ_SEED)
    verdicts = {"accepted": 0, "refused": 0}
    disagreements = []
    for n in range(2000):
        obj = copy.deepcopy(rng.choice(FUZZ_SETTINGS))
        obj["metadata"] = {"name": f"gen-{n}"}
        for _ in range(rng.choice((1, 1, 2, 3))):
            obj["spec"] = fuzz_edit(obj["spec"], rng)
        if not isinstance(obj["spec"], dict) or "\\ud800" in json.dumps(obj):
            continue
        crd, parser = judged_twice(installed.cp, obj)
        verdicts["accepted" if crd is None else "refused"] += 1
        named = re.findall(r"spec[^\s:,\"]*", crd or "")
        if (crd is None) != (parser is None) or (
            crd is not None
            and parser is not None
            and "strict decoding error" not in crd
            and not any(p.startswith(parser) or parser.startswith(p) for p in named)
        ):
            disagreements.append((n, json.dumps(obj["spec"])[:300], crd, parser))
    assert disagreements == [], f"FUZZ_SEED={FUZZ_SEED}"
    assert min(verdicts.values()) > 300, verdicts  # both sides reached


QUIET = "plain"  # a namespace where no webhook is called


@pytest.fixture(scope="module")
def quiet(installed: Installed) -> str:
    installed.cp.request("POST", "/api/v1/namespaces", {"metadata": {"name": QUIET}})
    return QUIET


def patched_by_mutate(client: FlaskClient, sent: dict[str, Any], namespace: str) -> Any:
    """`sent` as /mutate's answer leaves it, or None when the answer has no patch."""
    review = pod_review(sent, namespace=namespace)
    answer = client.post("/mutate", json=review).get_json()["response"]
    if "patch" not in answer:
        return None
    return jsonpatch.apply_patch(sent, json.loads(base64.b64decode(answer["patch"])))


def taken_once_injected(
    installed: Installed, quiet: str, made: Iterator[tuple[dict[str, Any], Any]]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """For each (golden case, pod made from its pod): when the API server takes the pod on its
    own (a dry run where no webhook is called), /mutate gets the very object the API server
    decoded and defaulted (what a webhook is sent), with the golden settings and the case's
    namespace, and the API server must take the patched pod too. Returns the counts of pods
    taken and mutated, and (pod, reason) for each patched pod it refused."""
    client = create_app(golden_index(), Config(), None, Metrics()).test_client()
    counts = {"taken": 0, "mutated": 0}
    refused = []
    for n, (case, pod) in enumerate(made):
        if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
            continue
        pod["metadata"] |= {"name": f"p-{n}", "namespace": quiet}
        reply = installed.create(pod, quiet, dry_run=True)
        if reply.status_code != 201:
            continue
        counts["taken"] += 1
        sent = reply.json()
        patched = patched_by_mutate(client, sent, case["namespace"])
        if patched is None:
            continue
        counts["mutated"] += 1
        again = installed.create(patched, quiet, dry_run=True)
        if again.status_code != 201:
            refused.append((json.dumps(sent)[:2000], again.json().get("message")))
    return counts, refused


def test_a_pod_the_api_server_takes_it_still_takes_once_injected(
    installed: Installed, quiet: str
) -> None:
    """Pods made from the golden ones by random edits (tests/test_fuzz.py). Before, the API
    server refused a few in 4,000 once patched: a pod with a container named like our init
    container (two containers of one name), and a copier init container written by hand with
    no volume at its folder (we mounted a volume with no name)."""
    cases = [load_case(path) for path in GOLDEN_CASES]  # with their namespaces
    rng = random.Random(FUZZ_SEED)

    def made() -> Iterator[tuple[dict[str, Any], Any]]:
        for _ in range(2000):
            case = rng.choice(cases)
            pod = copy.deepcopy(case["pod"])
            for _ in range(rng.choice((0, 1, 1, 2))):
                pod = fuzz_edit(pod, rng)
            yield case, pod

    counts, refused = taken_once_injected(installed, quiet, made())
    assert refused == [], f"FUZZ_SEED={FUZZ_SEED}"
    assert counts["taken"] > 600 and counts["mutated"] > 300, counts


def _quantity(rng: random.Random, resource: str) -> str:
    if resource == "cpu":
        return rng.choice(["10m", "50m", "100m", "150m", "250m", "1", "2"])
    return rng.choice(["32Mi", "64Mi", "128Mi", "192Mi", "256Mi", "1Gi", "4Gi"])


def _resources(rng: random.Random) -> dict[str, Any]:
    """Requests and/or limits of cpu and/or memory, requests never above limits."""
    out: dict[str, Any] = {}
    for resource in rng.sample(["cpu", "memory"], rng.randint(1, 2)):
        amounts = sorted(
            (_quantity(rng, resource) for _ in range(2)), key=lambda q: rules.quantity(q)
        )
        kinds = rng.choice([["requests"], ["limits"], ["requests", "limits"]])
        for kind, amount in zip(kinds, amounts[-len(kinds) :], strict=True):
            out.setdefault(kind, {})[resource] = amount
    return out


def _sidecar(rng: random.Random, n: int) -> dict[str, Any]:
    return {"name": f"side-{n}", "image": "proxy", "restartPolicy": "Always",
            "resources": _resources(rng)}  # fmt: skip


POD_FEATURES: list[Callable[[dict[str, Any], random.Random], None]] = [
    lambda spec, rng: spec.update(resources=_resources(rng)),  # pod-level resources
    lambda spec, rng: spec.setdefault("initContainers", []).insert(0, _sidecar(rng, 0)),
    lambda spec, rng: spec.setdefault("initContainers", []).append(_sidecar(rng, 1)),
    lambda spec, rng: spec["containers"][0].update(resources=_resources(rng)),
    lambda spec, rng: spec.update(os={"name": rng.choice(["linux", "windows"])}),
    lambda spec, rng: spec.update(hostUsers=False),
    lambda spec, rng: spec.update(restartPolicy=rng.choice(["Never", "OnFailure"])),
    lambda spec, rng: spec.setdefault("securityContext", {}).update(
        runAsNonRoot=False, runAsUser=0, fsGroup=2000
    ),
    lambda spec, rng: spec.update(shareProcessNamespace=True, hostNetwork=True),
]


def test_pods_using_kubernetes_features_the_api_server_takes_still_take_once_injected(
    installed: Installed, quiet: str
) -> None:
    """The golden pods with random combinations of pod features that touch what we add (pod-level
    resources, native sidecars with requests, Windows, user namespaces, root, restart policies,
    host networking), judged as above. Before, pod-level requests below the init container's
    were refused ("must be greater than or equal to aggregate container requests"), and so were
    Windows pods (securityContext fields "cannot be set for a windows pod") instead of being
    denied with the reason."""
    cases = [
        c for c in map(load_case, GOLDEN_CASES) if (c["pod"].get("spec") or {}).get("containers")
    ]
    rng = random.Random(FUZZ_SEED)

    def made() -> Iterator[tuple[dict[str, Any], Any]]:
        for _ in range(400):
            case = rng.choice(cases)
            pod = copy.deepcopy(case["pod"])
            for feature in rng.sample(POD_FEATURES, rng.randint(1, 3)):
                feature(pod["spec"], rng)
            yield case, pod

    counts, refused = taken_once_injected(installed, quiet, made())
    assert refused == [], f"FUZZ_SEED={FUZZ_SEED}"
    assert counts["taken"] > 150 and counts["mutated"] > 80, counts


def test_a_setting_the_judges_accept_makes_no_pod_of_its_group_one_the_api_server_refuses(
    installed: Installed, quiet: str
) -> None:
    """Settings made from the golden and example ones by random edits; each the parser accepts
    is the only setting of an index, and a notebook, a job and two model deployments of its
    group (golden pods) get their answer from /mutate; the API server must take every patched
    pod. Before, settings the CRD and the parser both accepted made every pod of the group one
    the API server refuses: a secretKeyRef key that no Secret can have ('a/b'), a request above
    its limit, a storage class that is not a name, an image with a space."""
    names = ("notebook-external", "job-group-volume", "deployment-model")
    pods = [load_case(p)["pod"] for p in GOLDEN_CASES if p.stem in names]
    pods.append(deployment_pod("phusers", "models:/iris/3", []))
    rng = random.Random(FUZZ_SEED)
    counts = {"settings": 0, "patched": 0}
    refused = []
    for n in range(1500):
        obj = copy.deepcopy(rng.choice(FUZZ_SETTINGS))
        obj["metadata"] = {"name": f"gen-{n}", "namespace": "hub", "resourceVersion": str(n)}
        for _ in range(rng.choice((1, 1, 2))):
            obj["spec"] = fuzz_edit(obj["spec"], rng)
        try:
            group = parse_setting(obj, "hub").group
        except SettingError:
            continue
        if group is not None and not re.fullmatch(r"[A-Za-z0-9]([-\w.]{0,61}[A-Za-z0-9])?", group):
            continue  # not a label value: no pod can name the group
        counts["settings"] += 1
        index = SettingsIndex()
        index.replace_entries([index.entry(obj)])
        client = create_app(index, Config(), None, Metrics()).test_client()
        for pod in copy.deepcopy(pods):
            pod["metadata"]["labels"].pop("primehub.io/group")
            if group is not None:  # (none: the namespace's setting, for pods of no group)
                pod["metadata"]["labels"]["mlflow.primehub.io/group"] = group
            pod["metadata"] |= {"name": f"p-{n}", "namespace": quiet}
            sent = installed.create(pod, quiet, dry_run=True).json()
            patched = patched_by_mutate(client, sent, "hub")
            if patched is None:
                continue
            counts["patched"] += 1
            again = installed.create(patched, quiet, dry_run=True)
            if again.status_code != 201:
                refused.append((n, again.json().get("message"), json.dumps(obj["spec"])[:1000]))
    assert refused == [], f"FUZZ_SEED={FUZZ_SEED}"
    assert counts["settings"] > 200 and counts["patched"] > 600, counts


def test_the_network_policy_applies_only_once_the_api_server_range_is_set(
    installed: Installed, tmp_path: Path
) -> None:
    manifests = Path(os.path.relpath(ROOT / "manifests", tmp_path))  # kustomize: no absolute
    kustomization = tmp_path / "kustomization.yaml"
    base = (
        f"resources: [{manifests / 'overlays' / 'self-managed'}]\n"
        f"components: [{manifests / 'components' / 'network-policy'}]\n"
    )

    def dry_run() -> subprocess.CompletedProcess[str]:
        return installed.cp.kubectl("apply", "--dry-run=server", "-k", str(tmp_path), check=False)

    kustomization.write_text(base)
    refused = dry_run()
    assert refused.returncode != 0
    assert "SET-THE-API-SERVER-CIDR" in refused.stderr  # the placeholder, named
    kustomization.write_text(
        base
        + """patches:
  - target: {kind: NetworkPolicy, name: mlflow-webhook}
    patch: |-
      - {op: replace, path: /spec/ingress/0/from/0/ipBlock/cidr, value: 172.20.0.0/24}
      - {op: replace, path: /spec/egress/0/to/0/ipBlock/cidr, value: 172.20.0.0/24}
"""
    )
    accepted = dry_run()
    assert accepted.returncode == 0, accepted.stderr
    assert "networkpolicy.networking.k8s.io/mlflow-webhook created (server dry run)" in (
        accepted.stdout
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "{group: g, trackingUri: 'http://m', trackingEnv: [{name: MLFLOW_TRACKING_PASSWORD, "
            "value: hunter2}]}",
            "looks like a credential",
        ),
        ("{group: g}", "spec.trackingUri: Required value"),
        ("{group: g, trackingUri: 'mlflow:5000'}", "spec.trackingUri"),
        (
            "{group: g, trackingUri: 'http://m', artifactEnv: [{name: A, value: x, valueFrom: "
            "{secretKeyRef: {name: s, key: k}}}]}",
            "needs exactly one of value or valueFrom",
        ),
        (
            "{group: g, trackingUri: 'http://m', trackingEnv: [{name: X, value: '1'}], "
            "artifactEnv: [{name: X, value: '2'}]}",
            "in trackingEnv or artifactEnv, not both",
        ),
        (
            "{group: g, trackingUri: 'http://m', artifactVolume: {claimName: p, mountPath: rel}}",
            "spec.artifactVolume.mountPath",
        ),
        (
            "{group: g, trackingUri: 'http://m', tackingUri: typo}",
            'unknown field "spec.tackingUri"',
        ),
    ],
)
def test_the_api_server_rejects_bad_settings_with_the_field(
    installed: Installed, spec: str, message: str
) -> None:
    r = installed.apply(
        "apiVersion: mlflow.primehub.io/v1alpha1\nkind: MLflowSetting\n"
        f"metadata: {{name: bad, namespace: hub}}\nspec: {spec}\n"
    )
    assert r.returncode != 0
    assert message in r.stderr, r.stderr


def test_primehub_pods_get_the_injection_through_the_api_server(installed: Installed) -> None:
    notebook = installed.created(pod_file("notebook"))
    env = env_of(notebook["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"]["value"] == "https://mlflow.research.example.com"
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "research-mlflow-login",
        "key": "password",
    }
    assert notebook["metadata"]["annotations"]["mlflow.primehub.io/injected"] == "hub/research-team"

    job = installed.created(pod_file("job"))
    assert {"name": "mlflow-group-volume", "mountPath": "/project/phusers"} in job["spec"][
        "containers"
    ][0]["volumeMounts"]

    deployment = installed.created(pod_file("deployment"))
    init = deployment["spec"]["initContainers"][-1]
    assert init["name"] == "mlflow-model-init"
    assert init["command"] == [
        "mlflow-webhook",
        "copy-artifacts",
        "models:/churn model/3",
        "/mnt/models",
    ]
    assert "env" not in deployment["spec"]["containers"][0]


def test_other_pods_namespaces_and_opt_outs_are_untouched(installed: Installed) -> None:
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "plain-"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }
    assert "annotations" not in installed.created(plain)["metadata"]

    notebook = pod_file("notebook")
    del notebook["metadata"]["namespace"]
    for namespace in ("closed", "team-b"):  # not opted in; opted in but no setting there
        stored = installed.created(notebook, namespace)
        assert "env" not in stored["spec"]["containers"][0] or all(
            e["name"] == "JUPYTERHUB_USER" for e in stored["spec"]["containers"][0]["env"]
        )
        installed.cp.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/jupyter-alice")
    r = installed.create(notebook, "team-b", dry_run=True)
    assert (
        r.headers.get("Warning", "").find(
            "no MLflowSetting for group 'Research_Team' in namespace 'team-b'"
        )
        >= 0
    )

    opted_out = pod_file("job")
    opted_out["metadata"]["name"] = "job-opted-out"
    opted_out["metadata"]["annotations"] = {"mlflow.primehub.io/inject": "false"}
    stored = installed.created(opted_out)
    assert "env" not in stored["spec"]["containers"][0]
    assert "mlflow.primehub.io/injected" not in stored["metadata"]["annotations"]


def test_the_webhook_identity_reads_settings_but_no_secrets(installed: Installed) -> None:
    api = installed.cp.client(installed.cp.webhook_kubeconfig)
    found = api.call("GET", "/apis/mlflow.primehub.io/v1alpha1/mlflowsettings")
    assert found is not None and len(found["items"]) >= 3
    for path in ("/api/v1/namespaces/hub/secrets/research-mlflow-login", "/api/v1/secrets"):
        with pytest.raises(ApiError) as e:
            api.call("GET", path)
        assert e.value.status == 403


def test_the_serving_processes_carry_no_library_only_other_commands_need(
    installed: Installed,
) -> None:
    """Memory per worker (goal: 60 MB with 10,000 settings): `cryptography` (7 MB) is for the
    certificate commands, `requests` with its charset tables (5 MB) for copy-artifacts; neither
    is mapped into the master or a worker serving from the cluster (read from /proc, as the
    kernel counts them)."""
    proc = installed.webhook.proc
    assert proc is not None
    master = proc.pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(workers) == 2
    for pid in [str(master), *workers]:
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "/site-packages/gevent/" in maps  # what a serving process does map
        for library in ("/cryptography/", "/charset_normalizer/"):
            assert library not in maps, f"process {pid} maps {library}"


def annotated_model_pod(group: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A model deployment of `group` (escaped as PrimeHub does) with our model-uri annotation."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"deploy-{group}-",
            "labels": {"app": "primehub-deployment", "primehub.io/group": f"escaped-{group}"},
            "annotations": {"mlflow.primehub.io/model-uri": "models:/m/1"},
        },
        "spec": spec,
    }


def test_a_restricted_namespace_admits_the_deployment_with_its_init_container(
    installed: Installed,
) -> None:
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    pod = annotated_model_pod(
        "secure",
        {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {"name": "model", "image": "model-server", "securityContext": restricted}
            ],
        },
    )
    stored = installed.created(pod, "secure")
    assert [c["name"] for c in stored["spec"]["initContainers"]] == ["mlflow-model-init"]


def test_a_limitrange_below_the_init_container_is_met_by_the_settings_model_init_resources(
    installed: Installed,
) -> None:
    """What no setting can know: a namespace's LimitRange caps containers below the init
    container's default limits (1Gi), and the API server refuses the model pod with
    LimitRange's message, as the README says; `modelInit.resources` in the group's setting is
    the remedy."""

    def objects(resources: dict[str, Any] | None) -> list[dict[str, Any]]:
        spec: dict[str, Any] = {"group": "capped", "trackingUri": "http://mlflow:5000"}
        if resources is not None:
            spec["modelInit"] = {"resources": resources}
        return [
            {"apiVersion": "v1", "kind": "LimitRange",
             "metadata": {"name": "cap", "namespace": "capped"},
             "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]}},
            {"apiVersion": "mlflow.primehub.io/v1alpha1", "kind": "MLflowSetting",
             "metadata": {"name": "capped", "namespace": "capped"}, "spec": spec},
        ]  # fmt: skip

    pod = annotated_model_pod(
        "capped", {"containers": [{"name": "model", "image": "model-server"}]}
    )
    installed.opted_in("capped", objects(None))
    refused = installed.create(pod, "capped", dry_run=True)
    assert refused.status_code == 403
    assert (
        "maximum memory usage per Container is 512Mi, but limit is 1Gi" in refused.json()["message"]
    )
    within = {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    installed.opted_in("capped", objects(within))

    def admitted() -> bool:
        return installed.create(pod, "capped", dry_run=True).status_code == 201

    wait_until(admitted, 5, "the model pod once the setting fits the LimitRange")
    stored = installed.create(pod, "capped", dry_run=True).json()
    init = next(c for c in stored["spec"]["initContainers"] if c["name"] == "mlflow-model-init")
    assert init["resources"]["limits"]["memory"] == "512Mi"


@contextlib.contextmanager
def sidecar_webhook(installed: Installed, tmp: Path) -> Iterator[None]:
    """A second, real mutating webhook that adds a container after ours has run."""
    from flask import Flask, request
    from werkzeug.serving import make_server

    app = Flask("sidecar")

    @app.post("/mutate")
    def mutate() -> Any:
        review = request.get_json()
        pod = review["request"]["object"]
        patch = []
        if not any(c["name"] == "sidecar" for c in pod["spec"]["containers"]):
            patch = [
                {
                    "op": "add",
                    "path": "/spec/containers/-",
                    "value": {"name": "sidecar", "image": "busybox"},
                }
            ]
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"],
                "allowed": True,
                "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(patch).encode()).decode(),
            },
        }

    ca = make_ca("sidecar-ca")
    pair = make_serving_cert(ca, ["127.0.0.1"])
    (tmp / "s.crt").write_bytes(pair.cert_pem())
    (tmp / "s.key").write_bytes(pair.key_pem())
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "s.crt", tmp / "s.key")
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True, ssl_context=ctx)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-sidecar-injector"},
        "webhooks": [
            {
                "name": "sidecar.example.com",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "failurePolicy": "Fail",
                "clientConfig": {
                    "url": f"https://127.0.0.1:{port}/mutate",
                    "caBundle": base64.b64encode(ca.cert_pem()).decode(),
                },
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "objectSelector": {"matchLabels": {"sidecar": "please"}},
            }
        ],
    }
    assert installed.apply([config]).returncode == 0
    try:
        yield
    finally:
        installed.cp.kubectl("delete", "mutatingwebhookconfiguration", "zz-sidecar-injector")
        server.shutdown()


def test_reinvocation_injects_a_container_added_after_us_exactly_once(
    installed: Installed, tmp_path: Path
) -> None:
    pod = pod_file("job")
    pod["metadata"]["name"] = "job-with-sidecar"
    pod["metadata"]["labels"]["sidecar"] = "please"
    with sidecar_webhook(installed, tmp_path):
        wait_until(
            lambda: len(installed.create(pod, dry_run=True).json()["spec"]["containers"]) == 2,
            30,
            "sidecar webhook",
        )
        stored = installed.created(pod)
    assert [c["name"] for c in stored["spec"]["containers"]] == ["main", "sidecar"]
    for container in stored["spec"]["containers"]:
        names = [e["name"] for e in container["env"]]
        assert names.count("MLFLOW_TRACKING_URI") == 1, container
        assert [m["name"] for m in container["volumeMounts"]].count("mlflow-group-volume") == 1
    assert [v["name"] for v in stored["spec"]["volumes"]].count("mlflow-group-volume") == 1


def test_reinvocation_keeps_one_ca_bundle_volume_after_the_api_server_defaults_it(
    installed: Installed, tmp_path: Path
) -> None:
    """Between our two calls the API server defaults the CA volume we added (defaultMode): the
    second call must still see it as the group's bundle, not as a stranger at our path."""
    setting = """
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {name: private-ca, namespace: team-b}
spec:
  group: Private_CA
  trackingUri: "https://mlflow.team-b:5000"
  caBundle: {configMapKeyRef: {name: corp-ca, key: ca.crt}}
"""
    assert installed.apply(setting).returncode == 0
    pod = pod_file("job", unique=True)
    del pod["metadata"]["namespace"]
    labels = pod["metadata"]["labels"]
    del labels["primehub.io/group"]
    labels.update({Config().group_label: "Private_CA", "sidecar": "please"})
    try:
        with sidecar_webhook(installed, tmp_path):
            wait_until(
                lambda: (
                    len(installed.create(pod, "team-b", dry_run=True).json()["spec"]["containers"])
                    == 2
                ),
                30,
                "sidecar webhook",
            )
            reply = installed.create(pod, "team-b", dry_run=True)
    finally:
        installed.cp.kubectl("delete", "-n", "team-b", "mlflowsetting", "private-ca")
    assert reply.status_code == 201, reply.text
    assert "Warning" not in reply.headers, reply.headers["Warning"]
    stored = reply.json()
    ca_volumes = [v["name"] for v in stored["spec"]["volumes"] if "configMap" in v]
    assert ca_volumes == ["mlflow-ca"]
    for container in stored["spec"]["containers"]:
        assert [
            m["name"] for m in container["volumeMounts"] if m["name"].startswith("mlflow-ca")
        ] == ["mlflow-ca"], container["name"]


def test_with_the_webhook_down_notebooks_start_and_deployments_are_refused(
    installed: Installed,
) -> None:
    installed.webhook.stop()
    try:
        notebook = installed.create(pod_file("notebook", unique=True), dry_run=True)
        assert notebook.status_code == 201
        assert "mlflow.primehub.io/injected" not in notebook.json()["metadata"].get(
            "annotations", {}
        )
        deployment = installed.create(pod_file("deployment", unique=True), dry_run=True)
        assert deployment.status_code == 500
        assert 'failed calling webhook "models.mlflow.primehub.io"' in deployment.json()["message"]
    finally:
        installed.webhook.start(installed.trusted_ca())
    assert installed.create(pod_file("deployment", unique=True), dry_run=True).status_code == 201
    notebook = installed.create(pod_file("notebook", unique=True), dry_run=True).json()
    assert "mlflow.primehub.io/injected" in notebook["metadata"]["annotations"]


def test_a_webhook_without_its_settings_refuses_deployments_saying_why(
    installed: Installed, tmp_path: Path
) -> None:
    """A replica that cannot list the settings (here: the API server refuses its token) answers
    503, and the user whose model deployment is refused reads our reason in the API server's
    error (a Kubernetes Status is the only error body whose message it passes on; of any other
    it says "the server is currently unable to handle the request")."""
    kubeconfig = tmp_path / "refused.kubeconfig"
    kubeconfig.write_text(
        re.sub(r'token: "\w+"', 'token: "not-a-token"', installed.cp.webhook_kubeconfig.read_text())
    )
    installed.webhook.stop()
    starting = WebhookProcess(
        installed.webhook.cert_dir,
        installed.webhook.port,
        tmp_path / "webhook.log",
        ["--cluster", f"--kubeconfig={kubeconfig}"],
        ["--ready-timeout=0", "--status-namespace="],
    )
    starting.launch()
    try:
        ca = installed.trusted_ca()
        wait_until(
            lambda: requests.get(f"{starting.url}/healthz", verify=ca, timeout=2).ok,
            30,
            "the webhook without its settings",
            starting.proc,
        )
        deployment = installed.create(pod_file("deployment", unique=True), dry_run=True)
        assert deployment.status_code == 500
        message = deployment.json()["message"]
        assert 'failed calling webhook "models.mlflow.primehub.io"' in message
        assert "the MLflow settings are not loaded yet" in message, message
        notebook = installed.create(pod_file("notebook", unique=True), dry_run=True)
        assert notebook.status_code == 201
        assert "mlflow.primehub.io/injected" not in notebook.json()["metadata"].get(
            "annotations", {}
        )
        # The admin reads why in the webhook's log.
        log = (tmp_path / "webhook.log").read_text()
        assert "the API server refused the webhook's credentials; retrying" in log, log
    finally:
        starting.stop()
        installed.webhook.start(installed.trusted_ca())


ROUTED_PODS: list[tuple[str, dict[str, Any]]] = [
    ("notebook", pod_file("notebook")),
    ("job", pod_file("job")),
    ("annotated deployment", pod_file("deployment")),
    ("primehub models:/", deployment_pod("phusers", "models:/iris/3", [])),
    ("primehub s3://", deployment_pod("phusers", "s3://models/iris", [])),
    ("primehub phfs://", deployment_pod("phusers", "phfs:///models/iris", [])),
    (
        "opted-in pod with a model",
        {
            "metadata": {
                "labels": {"mlflow.primehub.io/group": "Data_Science"},
                "annotations": {"mlflow.primehub.io/model-uri": "models:/m/1"},
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    ),
    (
        "opted-in pod",
        {
            "metadata": {"labels": {"mlflow.primehub.io/group": "Data_Science"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    ),
    (
        "mlflow app",
        {
            "metadata": {"labels": {"app": "primehub-app", "primehub.io/group": "escaped-phusers"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    ),
    (
        "opted out deployment",
        {
            "metadata": {
                "labels": {"app": "primehub-deployment", "primehub.io/group": "escaped-phusers"},
                "annotations": {
                    "mlflow.primehub.io/model-uri": "models:/m/1",
                    "mlflow.primehub.io/inject": "FALSE",
                },
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    ),
    (
        "no group",
        {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    ),
]


@contextlib.contextmanager
def routing(installed: Installed, config: Config, probe: dict[str, Any]) -> Iterator[str]:
    """The webhook configuration made from `config`, for one namespace of its own, pointed at
    an address where nothing listens and with Fail on both entries: the API server names the
    entry it chose in its error, or admits a pod it sends nowhere. `probe`: a pod it sends."""
    namespace = "routing"
    hooks = webhook_configuration(config)
    hooks["metadata"]["name"] = "mlflow-webhook-routing"
    for hook in hooks["webhooks"]:
        hook["failurePolicy"] = "Fail"
        hook["clientConfig"] = {"url": f"https://127.0.0.1:{free_port()}/mutate"}
        hook["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    assert installed.apply([ns, hooks]).returncode == 0
    try:
        wait_until(
            lambda: installed.create(probe, namespace, True).status_code == 500,
            30,
            "the routing configuration",
        )
        yield namespace
    finally:
        installed.cp.kubectl("delete", "mutatingwebhookconfiguration", "mlflow-webhook-routing")


def routed_like_the_rules(
    installed: Installed,
    config: Config,
    namespace: str,
    quiet: str,
    relabel: Callable[[dict[str, Any], random.Random], None] = lambda pod, rng: None,
) -> None:
    """1,500 pods made from the golden ones by random edits (tests/test_fuzz.py), then
    `relabel`, each the API server can take: routed by CEL as `pods.route` routes the pod as
    the API server decoded and defaulted it (what CEL sees)."""
    rng = random.Random(FUZZ_SEED)
    chosen: dict[str | None, int] = {}
    misrouted = []
    for n in range(1500):
        pod = copy.deepcopy(rng.choice(GOLDEN_PODS))
        for _ in range(rng.choice((1, 1, 2))):
            pod = fuzz_edit(pod, rng)
        if not isinstance(pod, dict) or not isinstance(pod.get("metadata"), dict):
            continue
        relabel(pod, rng)
        pod["metadata"] |= {"name": f"routed-{n}", "namespace": namespace}
        decoded = installed.create(
            pod | {"metadata": pod["metadata"] | {"namespace": quiet}}, quiet, True
        )
        if decoded.status_code != 201:  # not a pod the API server takes at all
            continue
        expected = route(decoded.json(), config)
        message = installed.create(pod, namespace, dry_run=True).json().get("message", "")
        got = next((r for r in Route if f'webhook "{r.value}.mlflow' in message), None)
        chosen[got and got.value] = chosen.get(got and got.value, 0) + 1
        if got != expected:
            misrouted.append((n, expected, message[:300], json.dumps(pod["metadata"])[:500]))
    assert misrouted == [], f"FUZZ_SEED={FUZZ_SEED}"
    assert min(chosen.get(k, 0) for k in (None, "models", "pods")) > 50, chosen


def test_the_api_server_routes_pods_as_the_webhook_would(installed: Installed, quiet: str) -> None:
    """The generated configuration's CEL routes each pod to the entry `pods.route` names: the
    table's pods, then generated ones."""
    with routing(installed, Config(), scenario_pod("notebook", "routing")) as namespace:
        for what, pod in ROUTED_PODS:
            pod = {**pod, "metadata": {**pod["metadata"], "generateName": "routed-"}}
            pod["metadata"].pop("name", None)
            pod["metadata"].pop("namespace", None)
            reply = installed.create(pod, namespace, dry_run=True)
            expected = route(pod, Config())
            if expected is None:
                assert reply.status_code == 201, (what, reply.text)
            else:
                assert f'failed calling webhook "{expected.value}.mlflow.primehub.io"' in (
                    reply.json().get("message", "")
                ), (what, expected, reply.text)
        routed_like_the_rules(installed, Config(), namespace, quiet, without_some_labels)


def without_some_labels(pod: dict[str, Any], rng: random.Random) -> None:
    """Pods with no group label (a team's namespace: served by their kind, or not at all), and
    pods with no label at all."""
    labels = pod["metadata"].get("labels")
    if not isinstance(labels, dict) or rng.random() > 0.4:
        return
    if rng.random() < 0.5:
        pod["metadata"]["labels"] = {}
    else:
        for key in ("primehub.io/group", "mlflow.primehub.io/group"):
            labels.pop(key, None)


def test_a_configuration_of_its_own_routes_as_its_rules_do(
    installed: Installed, quiet: str
) -> None:
    """Other group labels and an exclusion of two labels (both must match) in the configuration:
    the CEL made from it routes generated pods, relabelled, as `pods.route` does with it."""
    config = parse_config(
        {
            "labels": {"escapedGroup": "example.com/team", "group": "example.com/group-name"},
            "podKinds": {"exclude": [{"app": "primehub-app"}, {"tier": "system", "app": "infra"}]},
        }
    )
    renamed = {
        "primehub.io/group": "example.com/team",
        "mlflow.primehub.io/group": "example.com/group-name",
    }

    def relabel(pod: dict[str, Any], rng: random.Random) -> None:
        labels = pod["metadata"].get("labels")
        if not isinstance(labels, dict):
            return
        for old, new in renamed.items():
            if old in labels and rng.random() < 0.8:
                labels[new] = labels.pop(old)
        if rng.random() < 0.3:
            labels |= rng.choice([{"tier": "system", "app": "infra"}, {"tier": "system"}])

    probe = scenario_pod("notebook", "routing")
    probe["metadata"]["labels"] = {"example.com/team": "escaped-phusers"}
    with routing(installed, config, probe) as namespace:
        routed_like_the_rules(installed, config, namespace, quiet, relabel)


def test_kubectl_server_dry_run_shows_the_mutation(installed: Installed) -> None:
    r = installed.cp.kubectl(
        "create", "--dry-run=server", "-o", "yaml", "-f", str(EXAMPLES / "pods" / "deployment.yaml")
    )
    pod = yaml.safe_load(r.stdout)
    assert pod["spec"]["initContainers"][0]["name"] == "mlflow-model-init"
    assert pod["metadata"]["annotations"]["mlflow.primehub.io/injected"] == "hub/research-team"


def _certs(installed: Installed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "certs",
            "ensure",
            f"--kubeconfig={installed.cp.certs_kubeconfig}",
            "--host=127.0.0.1",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _kubelet_sync(installed: Installed) -> str:
    """What the kubelet does with the mounted Secret: the webhook's files follow its data."""
    r = installed.cp.request("GET", "/api/v1/namespaces/mlflow-webhook/secrets/mlflow-webhook-tls")
    data = {k: base64.b64decode(v) for k, v in r.json()["data"].items()}
    write_atomic(installed.cert_dir / "tls.key", data["tls.key"])
    write_atomic(installed.cert_dir / "tls.crt", data["tls.crt"])
    # What the webhook's pods see: the serving pair and the CA bundle, never a CA's key.
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    newest = x509.load_pem_x509_certificates(data["ca.crt"])[0]  # the bundle lists it first
    return newest.public_bytes(serialization.Encoding.PEM).decode()


def _wait_served_by(installed: Installed, ca_pem: str, name: str) -> None:
    """Until every worker serves a certificate signed by this CA (each reloads within a second,
    on its own): ten new connections in a row must verify."""
    ca_file = installed.cert_dir / name
    ca_file.write_text(ca_pem)

    def verified() -> bool:
        try:
            return requests.get(f"{installed.webhook.url}/healthz", timeout=2, verify=ca_file).ok
        except requests.exceptions.SSLError:
            return False

    wait_until(lambda: all(verified() for _ in range(10)), 10, f"a certificate signed by {name}")


def test_certificate_rotation_while_pods_are_created_fails_nothing(installed: Installed) -> None:
    first = _certs(installed)  # as the certs Job's identity, bound by manifests/ RBAC
    assert first.returncode == 0, first.stderr
    ca_pem = _kubelet_sync(installed)
    _wait_served_by(installed, ca_pem, "ca-now.crt")

    results: list[tuple[str, int, bool]] = []
    stop = threading.Event()

    def create_pods() -> None:
        i = 0
        while not stop.is_set():
            kind = ("notebook", "deployment")[i % 2]
            r = installed.create(pod_file(kind, unique=True), dry_run=True)
            injected = r.status_code == 201 and "mlflow.primehub.io/injected" in r.json()[
                "metadata"
            ].get("annotations", {})
            results.append((kind, r.status_code, injected))
            i += 1

    load = threading.Thread(target=create_pods)
    load.start()
    try:
        wait_until(lambda: len(results) >= 20, 30, "pods before rotation")
        rotated = _certs(installed, "--rotate-ca")
        assert rotated.returncode == 0, rotated.stderr
        assert "CA bundle has 2 certificate(s)" in rotated.stdout
        new_ca = _kubelet_sync(installed)
        assert new_ca != ca_pem
        _wait_served_by(installed, new_ca, "ca-new.crt")
        count = len(results)
        wait_until(lambda: len(results) >= count + 20, 30, "pods after rotation")
    finally:
        stop.set()
        load.join()
    failures = [r for r in results if r[1] != 201 or not r[2]]
    assert failures == [], failures[:5]


def test_an_install_from_before_the_split_moves_the_ca_key_out_of_the_mounted_secret(
    installed: Installed,
) -> None:
    from webhook.certs import CertPolicy, hosts_for, plan

    hosts = hosts_for("mlflow-webhook", "mlflow-webhook", ["127.0.0.1"])  # as _certs asks
    data = plan(None, hosts, CertPolicy())
    assert data is not None
    path = "/api/v1/namespaces/mlflow-webhook/secrets"
    for name in ("mlflow-webhook-tls", "mlflow-webhook-ca"):
        installed.cp.request("DELETE", f"{path}/{name}")
    legacy = {k: base64.b64encode(v).decode() for k, v in data.items()}  # all five keys
    r = installed.cp.request(
        "POST",
        path,
        {"metadata": {"name": "mlflow-webhook-tls"}, "type": "kubernetes.io/tls", "data": legacy},
    )
    assert r.status_code == 201, r.text
    result = _certs(installed)
    assert result.returncode == 0, result.stderr
    assert "moved the CA's key" in result.stdout
    served = installed.cp.request("GET", f"{path}/mlflow-webhook-tls").json()["data"]
    signing = installed.cp.request("GET", f"{path}/mlflow-webhook-ca").json()["data"]
    assert set(served) == {"tls.crt", "tls.key", "ca.crt"}
    assert served["tls.crt"] == legacy["tls.crt"]  # nothing was due: the same certificate
    assert signing == {k: legacy[k] for k in ("ca-signing.crt", "ca-signing.key")}
    _wait_served_by(installed, _kubelet_sync(installed), "ca-legacy.crt")


def test_concurrent_certificate_runs_agree(installed: Installed) -> None:
    """Two replicas of the keeper starting at once: one Secret, both runs succeed."""
    from webhook.certs import ensure

    client = installed.cp.client(installed.cp.certs_kubeconfig)
    for name in ("mlflow-webhook-tls", "mlflow-webhook-ca"):
        installed.cp.request("DELETE", f"/api/v1/namespaces/mlflow-webhook/secrets/{name}")
    outcomes: list[str] = []
    errors: list[Exception] = []

    def run() -> None:
        try:
            outcomes.append(
                ensure(
                    client,
                    "mlflow-webhook",
                    "mlflow-webhook-tls",
                    "mlflow-webhook",
                    "mlflow-webhook",
                    extra_hosts=["127.0.0.1"],
                )
            )
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(outcomes) == 2
    secret = installed.cp.request(
        "GET", "/api/v1/namespaces/mlflow-webhook/secrets/mlflow-webhook-ca"
    ).json()
    assert set(secret["data"]) == {"ca-signing.crt", "ca-signing.key"}
    config = installed.cp.request(
        "GET", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/mlflow-webhook"
    ).json()
    bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
    assert base64.b64decode(secret["data"]["ca-signing.crt"]) in bundle
    # Leave the webhook serving what the configuration now trusts, as the kubelet would.
    _wait_served_by(installed, _kubelet_sync(installed), "ca-after.crt")
    r = installed.create(pod_file("deployment", unique=True), dry_run=True)
    assert r.status_code == 201, r.text


def test_kubectl_apply_of_a_second_setting_for_a_group_prints_why_it_is_refused(
    installed: Installed,
) -> None:
    second = """
apiVersion: mlflow.primehub.io/v1alpha1
kind: MLflowSetting
metadata: {name: research-again, namespace: hub}
spec: {group: Research_Team, trackingUri: "http://elsewhere:5000"}
"""
    result = installed.apply(second)
    assert result.returncode != 0
    assert 'admission webhook "settings.mlflow.primehub.io" denied the request' in result.stderr
    assert "group 'Research_Team' is already claimed in namespace hub by hub/research-team" in (
        result.stderr
    )
    elsewhere = installed.apply(second.replace("namespace: hub", "namespace: team-b"))
    assert elsewhere.returncode == 0, elsewhere.stderr
    installed.cp.kubectl("delete", "mlflowsetting", "-n", "team-b", "research-again")
