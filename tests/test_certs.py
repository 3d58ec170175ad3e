"""The certificate keeper's decisions (pure) and the server's live reload of certificate files."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from webhook.certs import BUNDLE, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY, CertPolicy, hosts_for, plan
from webhook.tls import make_ca, make_serving_cert
from webhook.tlscontext import ReloadingContext

HOSTS = hosts_for("mlflow-webhook", "mlflow-webhook", ["127.0.0.1"])
POLICY = CertPolicy(ca_days=730, days=90)
SOON = 0.001  # days: issued five minutes ago, 86 s left (under a third of its life): due


def certs(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def data(
    ca_days: float = 730, leaf_days: float = 90, hosts: list[str] = HOSTS, bundle_extra: bytes = b""
) -> dict[str, bytes]:
    ca = make_ca(days=ca_days)
    leaf = make_serving_cert(ca, hosts, days=leaf_days)
    return {
        TLS_CRT: leaf.cert_pem(),
        TLS_KEY: leaf.key_pem(),
        CA_CRT: ca.cert_pem(),
        CA_KEY: ca.key_pem(),
        BUNDLE: ca.cert_pem() + bundle_extra,
    }


def test_a_fresh_install_gets_a_ca_and_a_serving_certificate_for_the_service() -> None:
    new = plan(None, HOSTS, POLICY)
    assert new is not None
    leaf = x509.load_pem_x509_certificate(new[TLS_CRT])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mlflow-webhook.mlflow-webhook.svc" in sans.get_values_for_type(x509.DNSName)
    assert leaf.issuer == certs(new[CA_CRT])[0].subject
    assert new[BUNDLE] == new[CA_CRT]


def test_nothing_is_done_while_nothing_is_due() -> None:
    assert plan(data(), HOSTS, POLICY) is None


def test_a_serving_certificate_near_expiry_is_renewed_under_the_same_ca() -> None:
    old = data(leaf_days=SOON)
    new = plan(old, HOSTS, POLICY)
    assert new is not None
    assert new[CA_CRT] == old[CA_CRT] and new[BUNDLE] == old[BUNDLE]
    assert new[TLS_CRT] != old[TLS_CRT]


def test_a_ca_near_expiry_is_replaced_and_the_old_one_stays_in_the_bundle() -> None:
    old = data(ca_days=SOON)
    new = plan(old, HOSTS, POLICY)
    assert new is not None
    bundle = certs(new[BUNDLE])
    assert [c.public_bytes(serialization.Encoding.PEM) for c in bundle] == [
        new[CA_CRT],
        old[CA_CRT],
    ]
    leaf = x509.load_pem_x509_certificate(new[TLS_CRT])
    leaf.verify_directly_issued_by(certs(new[CA_CRT])[0])


def test_expired_cas_leave_the_bundle() -> None:
    expired = make_ca(days=-0.001)
    new = plan(data(bundle_extra=expired.cert_pem(), leaf_days=SOON), HOSTS, POLICY)
    assert new is not None
    assert len(certs(new[BUNDLE])) == 1


def test_what_cannot_be_read_is_made_again_instead_of_failing_every_run() -> None:
    """A damaged Secret (edited by hand, or a CA key of another kind) must not stop renewal:
    the run would fail until the serving certificate expired and every model deployment with
    it. A damaged serving certificate is reissued under the same CA; a CA that cannot be used
    is replaced, the bundle keeping every old CA that can still be read."""
    old = data()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    leaf_damaged = plan({**old, TLS_CRT: b"junk"}, HOSTS, POLICY)
    assert leaf_damaged is not None and leaf_damaged[CA_CRT] == old[CA_CRT]
    for damaged in ({CA_CRT: b"junk"}, {CA_KEY: b"junk"}, {CA_KEY: rsa_pem}):
        new = plan({**old, **damaged, BUNDLE: old[BUNDLE] + b"junk" + _END}, HOSTS, POLICY)
        assert new is not None and new[CA_CRT] != old[CA_CRT]
        assert certs(new[BUNDLE]) == certs(new[CA_CRT] + old[CA_CRT])
        x509.load_pem_x509_certificate(new[TLS_CRT]).verify_directly_issued_by(
            certs(new[CA_CRT])[0]
        )


_END = b"-----END CERTIFICATE-----\n"


def test_new_hosts_get_a_new_certificate() -> None:
    old = data(hosts=HOSTS[:-1])
    new = plan(old, HOSTS, POLICY)
    assert new is not None and new[CA_CRT] == old[CA_CRT]
    leaf = x509.load_pem_x509_certificate(new[TLS_CRT])
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_the_server_context_follows_the_files_and_keeps_the_old_pair_on_bad_ones(
    tmp_path: Path,
) -> None:
    ca = make_ca()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = make_serving_cert(ca, ["127.0.0.1"])
    cert.write_bytes(first.cert_pem())
    key.write_bytes(first.key_pem())
    reloading = ReloadingContext(cert, key, check_every=0)
    before = reloading.get()
    assert reloading.get() is before  # unchanged files: the same context
    second = make_serving_cert(ca, ["127.0.0.1"])
    key.write_bytes(second.key_pem())
    cert.write_bytes(second.cert_pem())
    renewed = reloading.get()
    assert renewed is not before
    cert.write_bytes(b"half-written")
    assert reloading.get() is renewed  # a broken pair is not served; the last good one is


def test_the_expiry_metric_reads_what_cryptography_reads_from_utc_and_generalized_times(
    tmp_path: Path,
) -> None:
    """The server reads the expiry without `cryptography` (webhook/tlscontext.py): held to its
    reading for both RFC 5280 time forms (UTCTime until 2049, GeneralizedTime after), for the
    first certificate of a chain file, and 0 for a file that holds none."""
    from webhook.tlscontext import not_after

    ca = make_ca(days=365 * 40)  # past 2050: GeneralizedTime
    for days in (0.5, 90, 365 * 23, 365 * 30):
        leaf = make_serving_cert(ca, HOSTS, days=days)
        chain = tmp_path / "tls.crt"
        chain.write_bytes(leaf.cert_pem() + ca.cert_pem())
        assert not_after(chain) == leaf.cert.not_valid_after_utc.timestamp()
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem())
    assert not_after(tmp_path / "ca.crt") == ca.cert.not_valid_after_utc.timestamp()
    for junk in (b"", b"not a certificate", leaf.key_pem(), leaf.cert_pem()[:200]):
        (tmp_path / "junk.crt").write_bytes(junk)
        assert not_after(tmp_path / "junk.crt") == 0.0
    assert not_after(tmp_path / "missing.crt") == 0.0
