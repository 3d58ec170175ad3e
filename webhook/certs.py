"""`mlflow-webhook certs ensure`: the webhook's CA and serving certificate, kept in Secrets, and
the CA bundle in the webhook configuration. Two Secrets: the serving pair and the CA bundle
(`mlflow-webhook-tls`, mounted by the webhook's pods) and the CA with its private key
(`mlflow-webhook-ca`, read only by this keeper), so no webhook pod ever holds the key of a CA
the API server trusts. Renewal never breaks a request in flight:

- a new CA enters the bundle (old + new) in the webhook configuration before the Secret that
  serves a certificate signed by it is written, and the old CA stays in the bundle until it
  expires, so whichever certificate a replica serves during the switch is trusted;
- concurrent runs are safe: the Secret is written with optimistic concurrency, a loser re-reads.

Objects are read and written as plain JSON so fields this code does not know survive.
"""

from __future__ import annotations

import base64
import datetime
import logging
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from webhook.kube import Api, Conflict
from webhook.tls import KeyPair, load_pair, make_ca, make_serving_cert, remaining

log = logging.getLogger(__name__)

Data = dict[str, bytes]
TLS_CRT, TLS_KEY, BUNDLE, CA_CRT, CA_KEY = (
    "tls.crt",
    "tls.key",
    "ca.crt",
    "ca-signing.crt",
    "ca-signing.key",
)
SERVED = (TLS_CRT, TLS_KEY, BUNDLE)  # in the Secret the webhook mounts
SIGNING = (CA_CRT, CA_KEY)  # in the keeper's own Secret


@dataclass(frozen=True)
class CertPolicy:
    ca_days: float = 730
    days: float = 90
    renew_fraction: float = 1 / 3  # renew when less than this part of the lifetime is left


def hosts_for(service: str, namespace: str, extra: list[str] | None = None) -> list[str]:
    return [
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        f"{service}.{namespace}",
        service,
        *(extra or []),
    ]


def _due(cert: x509.Certificate, fraction: float) -> bool:
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return remaining(cert) < lifetime * fraction


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in ext.get_values_for_type(x509.DNSName)} | {
        str(v) for v in ext.get_values_for_type(x509.IPAddress)
    }


_PEM_END = b"-----END CERTIFICATE-----"


def _certificates(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle that can be read (one damaged block loses only itself)."""
    found = []
    for block in pem.split(_PEM_END)[:-1]:
        try:
            found.append(x509.load_pem_x509_certificate(block + _PEM_END))
        except ValueError:
            log.warning("a certificate in the CA bundle cannot be read; it is dropped")
    return found


def _bundle(*pems: bytes) -> bytes:
    """CA certificates, newest first, without duplicates or expired ones."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    for pem in pems:
        for cert in _certificates(pem):
            fingerprint = cert.fingerprint(hashes.SHA256())
            if fingerprint in seen or remaining(cert) <= datetime.timedelta(0):
                continue
            seen.add(fingerprint)
            out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def plan(
    data: Data | None, hosts: list[str], policy: CertPolicy, rotate_ca: bool = False
) -> Data | None:
    """The Secret's next data, or None when nothing is due. Pure apart from key generation."""
    data = data or {}
    ca = _readable_ca(data)
    if ca is None or rotate_ca or _due(ca.cert, policy.renew_fraction):
        new_ca = make_ca(days=policy.ca_days)
        return _issue(new_ca, hosts, policy, _bundle(new_ca.cert_pem(), data.get(BUNDLE, b"")))
    leaf = _readable_leaf(data)
    if (
        leaf is None
        or _due(leaf, policy.renew_fraction)
        or _sans(leaf) != set(hosts)
        or leaf.issuer != ca.cert.subject
    ):
        return _issue(ca, hosts, policy, _bundle(ca.cert_pem(), data.get(BUNDLE, b"")))
    return None


def _readable_ca(data: Data) -> KeyPair | None:
    """The CA of the Secret, or None for none, or one that cannot be read or is not ours (an
    EC key): the keeper then makes a new one (trusted before it serves, as on rotation) rather
    than failing on every run until the serving certificate expires."""
    if CA_CRT not in data or CA_KEY not in data:
        return None
    try:
        return load_pair(data[CA_CRT], data[CA_KEY])
    except (ValueError, TypeError):
        log.warning("the CA in the Secret cannot be used (damaged, or not an EC key): a new CA")
        return None


def _readable_leaf(data: Data) -> x509.Certificate | None:
    if TLS_CRT not in data:
        return None
    try:
        return x509.load_pem_x509_certificate(data[TLS_CRT])
    except ValueError:
        log.warning("the serving certificate in the Secret cannot be read: a new one")
        return None


def _issue(ca: KeyPair, hosts: list[str], policy: CertPolicy, bundle: bytes) -> Data:
    leaf = make_serving_cert(ca, hosts, days=min(policy.days, policy.ca_days))
    return {
        TLS_CRT: leaf.cert_pem(),
        TLS_KEY: leaf.key_pem(),
        BUNDLE: bundle,
        CA_CRT: ca.cert_pem(),
        CA_KEY: ca.key_pem(),
    }


def ensure(
    api: Api,
    namespace: str,
    secret: str,
    service: str,
    webhook_configuration: str,
    policy: CertPolicy = CertPolicy(),
    rotate_ca: bool = False,
    extra_hosts: list[str] | None = None,
    ca_secret: str = "mlflow-webhook-ca",
) -> str:
    """One run of the certificate keeper; returns what it did, in words."""
    hosts = hosts_for(service, namespace, extra_hosts)
    path = f"/api/v1/namespaces/{namespace}/secrets"
    for _ in range(10):
        served_obj = api.call("GET", f"{path}/{secret}")
        signing_obj = api.call("GET", f"{path}/{ca_secret}")
        served, signing = _data(served_obj), _data(signing_obj)
        # An install from before the split kept the CA in the served Secret: take it from there.
        data = {**served, **signing}
        new = plan(data, hosts, policy, rotate_ca)
        target = new or data
        legacy = any(k in served for k in SIGNING)
        try:
            if {k: target[k] for k in SIGNING} != {k: signing.get(k) for k in SIGNING}:
                signing_new = {k: target[k] for k in SIGNING}
                _write(api, namespace, ca_secret, signing_obj, signing_new, "Opaque")
            _publish_bundle(api, webhook_configuration, target[BUNDLE])  # trust, then serve
            if new is None and not legacy:
                return "certificates are up to date"
            served_new = {k: target[k] for k in SERVED}
            _write(api, namespace, secret, served_obj, served_new, "kubernetes.io/tls")
        except Conflict:
            log.info("a Secret changed under us (another run); reading them again")
            rotate_ca = False  # the other run rotated, or will: do not rotate twice
            continue
        if new is None:
            return f"moved the CA's key from Secret {secret} to Secret {ca_secret}"
        leaf = x509.load_pem_x509_certificate(new[TLS_CRT])
        return (
            f"wrote a serving certificate for {hosts[0]} valid until "
            f"{leaf.not_valid_after_utc:%Y-%m-%d}; CA bundle has "
            f"{new[BUNDLE].count(b'BEGIN CERTIFICATE')} certificate(s)"
        )
    raise RuntimeError(f"Secrets {namespace}/{secret} and {ca_secret} kept changing; giving up")


def _data(obj: dict[str, Any] | None) -> Data:
    return {k: base64.b64decode(v) for k, v in ((obj or {}).get("data") or {}).items()}


def _write(
    api: Api, namespace: str, name: str, current: dict[str, Any] | None, data: Data, kind: str
) -> None:
    """Creates or replaces (with its resourceVersion: optimistic concurrency) a Secret's data."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    body = current or {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "namespace": namespace},
    }
    body["data"] = {k: base64.b64encode(v).decode() for k, v in data.items()}
    if current is None:
        api.call("POST", path, body)
    else:
        api.call("PUT", f"{path}/{name}", body)


def _publish_bundle(api: Api, name: str, bundle: bytes) -> None:
    """Into the mutating configuration (required) and the validating one (if installed)."""
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        _publish_to(api, kind, name, bundle, required=kind.startswith("mutating"))


def _publish_to(api: Api, kind: str, name: str, bundle: bytes, required: bool) -> None:
    path = f"/apis/admissionregistration.k8s.io/v1/{kind}/{name}"
    encoded = base64.b64encode(bundle).decode()
    for _ in range(10):
        config = api.call("GET", path)
        if config is None:
            if not required:
                return
            raise RuntimeError(
                f"MutatingWebhookConfiguration {name} does not exist; install the manifests first"
            )
        hooks = config.get("webhooks") or []
        if all((h.get("clientConfig") or {}).get("caBundle") == encoded for h in hooks):
            return
        for hook in hooks:
            hook.setdefault("clientConfig", {})["caBundle"] = encoded
        try:
            api.call("PUT", path, config)
            return
        except Conflict:
            continue
    raise RuntimeError(f"{kind}/{name} kept changing; giving up")
