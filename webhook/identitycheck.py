"""The doctor's question about a Kubernetes identity (trackingAuth): may this ServiceAccount read
registered models in the workspace? Asked of the API server with the ServiceAccount's own token
(a SelfSubjectAccessReview), as `mlflow-kubernetes-plugins` asks it for every request: the token
the pod has, or one from the TokenRequest API for a ServiceAccount an admin names."""

from __future__ import annotations

from dataclasses import dataclass

from webhook.kube import Api, Credentials

# What the server's plugin checks (resource, verb) before it lets a copy through: the version's
# download URI (registeredmodels get), then the artifacts (experiments get).
READS = (("registeredmodels", "get"), ("experiments", "get"))
API_GROUP = "mlflow.kubeflow.org"


@dataclass(frozen=True)
class Verdict:
    account: str  # namespace/name
    missing: tuple[str, ...]  # "resource verb" the account may not do there


def token_for(caller: Credentials, namespace: str, account: str) -> str:
    """A short-lived token of `account` (the TokenRequest API; `caller` may create
    serviceaccounts/token there)."""
    api = Api(caller)
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 600},
    }
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    reply = api.call("POST", path, body)
    if reply is None:
        raise LookupError(f"no ServiceAccount {namespace}/{account}")
    return str(reply["status"]["token"])


def may_read(where: Credentials, token: str, workspace: str, account: str) -> Verdict:
    """The API server's answer, for the plugin's reads of a model in `workspace` (a namespace),
    asked with `token` itself; `where` only says where the API server is (and its CA)."""
    api = Api(Credentials(where.server, where.verify, token=token))
    missing = []
    for resource, verb in READS:
        attributes = {
            "group": API_GROUP,
            "resource": resource,
            "verb": verb,
            "namespace": workspace,
        }
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        reply = api.call("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", review)
        if not (reply or {}).get("status", {}).get("allowed"):
            missing.append(f"{resource} {verb}")
    return Verdict(account, tuple(missing))
