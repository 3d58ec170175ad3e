"""The serving side of TLS, with the standard library only: server contexts that follow the
certificate files (renewed by cert-manager or `mlflow-webhook certs`) without a restart, and
when the served certificate expires, for the metrics. Making certificates needs `cryptography`
(webhook/tls.py), which every worker would otherwise carry: 7 MB each."""

from __future__ import annotations

import base64
import binascii
import calendar
import logging
import re
import ssl
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18


def not_after(cert_file: Path) -> float:
    """When the file's first certificate (the served one) expires, as a Unix time; 0 when it
    cannot be read."""
    try:
        found = _PEM.search(cert_file.read_bytes())
        if found is None:
            return 0.0
        return _not_after(base64.b64decode(found.group(1)))
    except (OSError, ValueError, IndexError, binascii.Error):
        return 0.0


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at `at`: (tag, where its content starts, where it ends)."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der):
        raise ValueError("truncated certificate")
    return tag, at, at + length


def _not_after(der: bytes) -> float:
    """RFC 5280: Certificate = SEQUENCE {tbsCertificate, ...}; tbsCertificate = SEQUENCE
    {[0] version (optional), serialNumber, signature, issuer, validity {notBefore, notAfter},
    ...}; a time is UTCTime (YYMMDDHHMMSSZ, 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    _, tbs, _ = _element(der, _element(der, 0)[1])
    at = tbs
    if der[at] == 0xA0:  # version
        at = _element(der, at)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        at = _element(der, at)[2]
    validity = _element(der, at)[1]
    tag, start, end = _element(der, _element(der, validity)[2])
    text = der[start:end].decode("ascii")
    if tag == _UTC_TIME and len(text) == 13:
        year = int(text[:2])
        text = f"{19 if year >= 50 else 20}{text}"
    elif not (tag == _GENERALIZED_TIME and len(text) == 15):
        raise ValueError("not an RFC 5280 time")
    if not text.endswith("Z"):
        raise ValueError("not an RFC 5280 time")
    return float(calendar.timegm(time.strptime(text, "%Y%m%d%H%M%SZ")))


class ReloadingContext:
    """Server SSLContexts that follow the certificate files: `get()` (called for every new
    connection) checks at most once a second whether the files changed and then builds a new
    context. Open connections keep theirs, so nothing in flight is dropped."""

    def __init__(self, cert_file: Path, key_file: Path, check_every: float = 1.0) -> None:
        self.cert_file, self.key_file, self.check_every = cert_file, key_file, check_every
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._checked = time.monotonic()
        self._current = self._build()

    def _files_stamp(self) -> tuple[float, float, int, int]:
        c, k = self.cert_file.stat(), self.key_file.stat()
        return (c.st_mtime, k.st_mtime, c.st_ino, k.st_ino)

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def get(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked >= self.check_every:
            with self._lock:
                if now - self._checked >= self.check_every:
                    self._checked = now
                    self._maybe_reload()
        return self._current

    def _maybe_reload(self) -> None:
        try:
            stamp = self._files_stamp()
            if stamp != self._stamp:
                self._current = self._build()
                self._stamp = stamp
                log.info("loaded renewed certificate from %s", self.cert_file)
        except (OSError, ssl.SSLError) as e:  # half-written files: keep serving the old pair
            log.warning("certificate reload failed, keeping the current one: %s", e)


def first_context(cert_file: Path, key_file: Path, patience: float = 20.0) -> ReloadingContext:
    """A worker's first context. A worker may start between a renewal's two writes (the key, then
    the certificate: `mlflow-webhook certs` writes them so; a kubelet swaps a Secret's files at
    once): it waits for a pair that matches, because a worker that fails to boot makes gunicorn
    stop the whole server. A pair still broken after `patience` (less than gunicorn's 30 s
    timeout for a silent worker) is no renewal in progress: the error stops the server."""
    deadline = time.monotonic() + patience
    warned = False
    while True:
        try:
            return ReloadingContext(cert_file, key_file)
        except (OSError, ssl.SSLError) as e:
            if time.monotonic() >= deadline:
                raise
            if not warned:
                log.warning("cannot load the certificate (%s); waiting for a matching pair", e)
                warned = True
            time.sleep(0.2)
