"""`mlflow-webhook copy-artifacts`: put one registered model version into a folder, or fail loudly.

The folder is usually an emptyDir mount point: it cannot be renamed, so the copy is staged
inside it, moved into place when complete, and a completion marker is written last. A journal
file marks the folder as ours while a copy is under way, so a restarted init container may wipe
what an interrupted one left, and never touches a folder that holds someone else's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

from webhook.modeluri import ModelUri, ModelUriError, parse_model_uri

log = logging.getLogger("webhook.copy")

COMPLETE = ".mlflow-model.json"  # written last: its presence means the model is whole
JOURNAL = ".mlflow-copy-in-progress"
STAGING = ".mlflow-staging"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # anything unexpected
    USAGE = 2  # bad model URI, no MLFLOW_TRACKING_URI
    NOT_FOUND = 3  # model, version, alias, stage or its artifacts do not exist
    AUTH = 4  # 401/403 from the registry or the artifact store
    DESTINATION = 5  # the destination is not writable, or holds files that are not ours
    UNAVAILABLE = 6  # transient failures (refused, 5xx, timeouts) outlasted the time limit


class CopyError(Exception):
    def __init__(self, code: Exit, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


class _Transient(Exception):
    """Worth another try: connection refused, 5xx, timeouts."""


@dataclass(frozen=True)
class Resolved:
    name: str
    version: str
    source: str  # where the artifacts are downloaded from


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact(text: str) -> str:
    """No credentials in output: drop user:password@ from any URL in the text."""
    return _USERINFO.sub("***@", text)


def _classify(error: BaseException, uri: ModelUri, where: str, what: str) -> Exception:
    """Maps a client error to a final CopyError or a _Transient one, by status, not by text."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    from mlflow.exceptions import MlflowException

    text = redact(str(error)).splitlines()[0][:500] if str(error) else type(error).__name__
    if isinstance(error, MlflowException):
        code = error.error_code
        if code == "INTERNAL_ERROR" and "downloading one or more artifacts" in str(error):
            # MLflow folds per-file store errors into text; the status is all that is left.
            status = re.findall(r"An error occurred \((\w+)\)", str(error))
            if any(s in ("403", "401", "AccessDenied", "InvalidAccessKeyId") for s in status):
                code = "PERMISSION_DENIED"
            elif any(s in ("404", "NoSuchKey", "NoSuchBucket") for s in status):
                code = "RESOURCE_DOES_NOT_EXIST"
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"):
            if what == "resolve" or where.startswith("mlflow-artifacts:"):
                return CopyError(
                    Exit.AUTH,
                    f"the group's MLflow server refused access ({where}): "
                    "check the tracking credentials",
                )
            return CopyError(
                Exit.AUTH,
                f"the artifact store refused access to {where}: check the artifact credentials",
            )
        if code in (
            "RESOURCE_DOES_NOT_EXIST",
            "NOT_FOUND",
            "INVALID_PARAMETER_VALUE",
            "ENDPOINT_NOT_FOUND",
            "BAD_REQUEST",
            "INVALID_STATE",
        ):
            return CopyError(Exit.NOT_FOUND, f"{uri.describe()} was not found: {text}")
        return _Transient(text)
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        s3code = error.response.get("Error", {}).get("Code", "")
        if status in (401, 403) or s3code in (
            "AccessDenied",
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
        ):
            return CopyError(
                Exit.AUTH,
                f"the artifact store refused access to {where} ({s3code}): "
                "check the artifact credentials",
            )
        if status == 404 or s3code in ("NoSuchKey", "NoSuchBucket", "404"):
            return CopyError(
                Exit.NOT_FOUND,
                f"the artifacts of {uri.describe()} are missing from {where} ({s3code})",
            )
        return _Transient(text)
    if isinstance(error, NoCredentialsError):
        return CopyError(
            Exit.AUTH,
            f"no credentials for the artifact store at {where}: "
            "check the artifact env of the group's setting",
        )
    if isinstance(error, EndpointConnectionError | ConnectionError | TimeoutError):
        return _Transient(text)
    if isinstance(error, FileNotFoundError):
        return CopyError(
            Exit.NOT_FOUND,
            f"the artifacts of {uri.describe()} are not at {where}; "
            "if they are on the group volume, is it mounted there?",
        )
    if isinstance(error, PermissionError):
        return CopyError(Exit.AUTH, f"no permission to read the artifacts at {where}")
    return CopyError(Exit.FAILED, f"copying {uri.describe()} failed: {text}")


def resolve(uri: ModelUri) -> Resolved:
    from mlflow import MlflowClient

    client = MlflowClient()
    if uri.version is not None:
        version = client.get_model_version(uri.name, uri.version)
    elif uri.alias is not None:
        version = client.get_model_version_by_alias(uri.name, uri.alias)
    else:
        stages = None if uri.stage == "latest" else [uri.stage]
        with warnings.catch_warnings():  # stages are deprecated in MLflow, still served
            warnings.simplefilter("ignore")
            found = client.get_latest_versions(uri.name, stages=stages)
        if not found:
            raise CopyError(
                Exit.NOT_FOUND, f"{uri.describe()} does not exist: no version is in that stage"
            )
        version = max(found, key=lambda v: int(v.version))
    source = client.get_model_version_download_uri(uri.name, version.version)
    return Resolved(uri.name, str(version.version), str(source))


def _explain_missing(uri: ModelUri) -> CopyError | None:
    """Whether the model itself is missing, which says more than "version not found"."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_registered_model(uri.name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return CopyError(
                Exit.NOT_FOUND, f'model "{uri.name}" does not exist in the group\'s MLflow registry'
            )
        return None
    return CopyError(
        Exit.NOT_FOUND, f"{uri.describe()} does not exist in the group's MLflow registry"
    )


def _with_retries(uri: ModelUri, deadline: float, what: str, action: Any, where: str) -> Any:
    delay = 1.0
    attempt = 1
    while True:
        try:
            return action()
        except CopyError:
            raise
        except Exception as e:
            error = _classify(e, uri, where, what)
            if isinstance(error, CopyError):
                if error.code is Exit.NOT_FOUND and what == "resolve":
                    raise _explain_missing(uri) or error from None
                raise error from None
            wait = min(delay, 30.0) * (1 + random.random() / 4)
            if time.monotonic() + wait > deadline:
                raise CopyError(
                    Exit.UNAVAILABLE,
                    f"could not {what} {uri.describe()} after {attempt} attempts: {error}",
                ) from None
            log.warning(
                "%s failed (attempt %d, %s); retrying in %.1f s", what, attempt, error, wait
            )
            time.sleep(wait)
            delay *= 2
            attempt += 1


def _tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(folder, name)).st_size
                files += 1
    return files, size


def _human(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


class _Progress:
    """Logs files and bytes done (and the rate) every `every` seconds during a long copy."""

    def __init__(self, root: Path, every: float) -> None:
        self.root, self.every = root, every
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            files, size = _tree_size(self.root)
            rate = size / max(time.monotonic() - self.start, 1e-9)
            log.info("copied %d files, %s (%s/s)", files, _human(size), _human(rate))


def _local_source(source: str) -> Path | None:
    """The folder of a plain path or file:// source (MLflow installed in the group), else None."""
    parsed = urlparse(source)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if not parsed.scheme and source.startswith("/"):
        return Path(source)
    return None


def _mount_points() -> list[str]:
    """Where this container has something mounted (the kernel's own table)."""
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split(" ")
            if len(fields) > 4:  # octal escapes (\040 for a space) as the kernel writes them
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
    return points


def _missing_local(source: str, local: Path, uri: ModelUri) -> CopyError:
    """Why a plain-path source is not there, naming the mount it needs when none holds it."""
    path = str(local)
    holder = max(
        (p for p in _mount_points() if path == p or path.startswith(p.rstrip("/") + "/")),
        key=len,
        default="/",
    )
    if holder == "/":
        needed = "/" + "/".join(local.parts[1:3])  # /project/<g> for PrimeHub's group volume
        return CopyError(
            Exit.NOT_FOUND,
            f"the artifacts of {uri.describe()} are at {source}, which no volume mounted in "
            f"this container holds: mount the volume that has them at {needed} (for "
            "PrimeHub's group volume: artifactVolume {groupVolume: true} in the group's "
            "MLflowSetting)",
        )
    return CopyError(
        Exit.NOT_FOUND,
        f"there are no artifacts for {uri.describe()} at {source}: the volume mounted at "
        f"{holder} does not hold them",
    )


def _fetch(source: str, staging: Path, uri: ModelUri) -> Path:
    """Downloads the version's artifacts into `staging`; returns the downloaded folder."""
    local = _local_source(source)
    if local is not None:
        if not local.exists() or (local.is_dir() and not any(local.iterdir())):
            raise _missing_local(source, local, uri)
        target = staging / local.name
        # Per file the kernel's copy (sendfile), as fast as `cp -r`; MLflow's local download
        # (a thread pool of copy2 over a listing) takes about twice as long.
        if local.is_dir():
            shutil.copytree(local, target, copy_function=shutil.copyfile)
        else:
            shutil.copyfile(local, target)
        return target
    import mlflow.artifacts
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if not get_artifact_repository(source).list_artifacts():
        raise CopyError(
            Exit.NOT_FOUND, f"there are no artifacts for {uri.describe()} at {redact(source)}"
        )
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging)))


def _clear(dest: Path) -> None:
    for entry in dest.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _prepare(dest: Path) -> dict[str, Any] | None:
    """Makes sure `dest` is ours to write; returns the completion record found there, if any."""
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CopyError(
            Exit.DESTINATION, f"cannot create the destination {dest}: {e.strerror}"
        ) from None
    if not os.access(dest, os.W_OK | os.X_OK):
        raise CopyError(Exit.DESTINATION, f"the destination {dest} is not writable")
    marker = dest / COMPLETE
    if marker.exists():
        with contextlib.suppress(OSError, ValueError):
            record: dict[str, Any] = json.loads(marker.read_text())
            return record
    entries = [e.name for e in dest.iterdir()]
    if entries and JOURNAL not in entries and COMPLETE not in entries:
        raise CopyError(
            Exit.DESTINATION,
            f"the destination {dest} holds files that "
            "copy-artifacts did not write; refusing to overwrite",
        )
    return None


def copy_model(uri: ModelUri, dest: Path, timeout: float, progress_every: float = 10.0) -> Resolved:
    """Resolves and copies; returns what was copied. Raises CopyError with the exit code."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise CopyError(
            Exit.USAGE,
            "MLFLOW_TRACKING_URI is not set: the group has no MLflow setting in this pod",
        )
    # Our own retries (with a deadline) replace MLflow's long default ones.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    start = time.monotonic()
    deadline = start + timeout
    existing = _prepare(dest)
    registry = redact(os.environ.get("MLFLOW_REGISTRY_URI") or os.environ["MLFLOW_TRACKING_URI"])
    found: Resolved = _with_retries(uri, deadline, "resolve", lambda: resolve(uri), registry)
    log.info(
        "resolved %s to version %s at %s in %.2f s",
        uri,
        found.version,
        redact(found.source),
        time.monotonic() - start,
    )
    if existing and [existing.get(k) for k in ("name", "version", "source")] == [
        found.name,
        found.version,
        found.source,
    ]:
        log.info(
            "version %s of model %r is already complete in %s", found.version, found.name, dest
        )
        return found
    copy_start = time.monotonic()
    _clear(dest)
    (dest / JOURNAL).touch()
    staging = dest / STAGING
    try:

        def download() -> Path:
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir()
            return _fetch(found.source, staging, uri)

        with _Progress(staging, progress_every):
            local = _with_retries(uri, deadline, "download", download, redact(found.source))
        if local.is_dir():
            for entry in local.iterdir():
                entry.rename(dest / entry.name)
        else:
            local.rename(dest / local.name)
        shutil.rmtree(staging)
        (dest / JOURNAL).unlink()
        files, size = _tree_size(dest)
        record = {
            "name": found.name,
            "version": found.version,
            "source": found.source,
            "files": files,
            "bytes": size,
        }
        tmp = dest / f".{COMPLETE}.tmp"
        tmp.write_text(json.dumps(record))
        tmp.rename(dest / COMPLETE)
    except BaseException:
        with contextlib.suppress(OSError):
            _clear(dest)  # nothing that looks like a model is left behind
        raise
    now = time.monotonic()
    log.info(
        "copied version %s of model %r from %s: %d files, %s in %.2f s (%s/s); total %.2f s",
        found.version,
        found.name,
        redact(found.source),
        files,
        _human(size),
        now - copy_start,
        _human(size / max(now - copy_start, 1e-9)),
        now - start,
    )
    return found


def _write_termination_message(path: Path | None, sentence: str) -> None:
    target = path or DEFAULT_TERMINATION_LOG
    if path is None and not target.exists():
        return  # not in a pod
    with contextlib.suppress(OSError):
        target.write_text(sentence + "\n")


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so the copy cleans up what it staged


def run(
    model_uri: str,
    dest: Path,
    timeout: float,
    termination_path: Path | None,
    progress_every: float = 10.0,
) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for noisy in ("mlflow", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        copy_model(parse_model_uri(model_uri), dest, timeout, progress_every)
        return Exit.OK
    except ModelUriError as e:
        error = CopyError(Exit.USAGE, str(e))
    except CopyError as e:
        error = e
    except KeyboardInterrupt:
        error = CopyError(Exit.FAILED, "the copy was interrupted; nothing was left in place")
    except Exception as e:  # a bug or an error nobody classified: still one plain sentence
        log.debug("unexpected error", exc_info=True)
        error = CopyError(Exit.FAILED, f"copying {model_uri} failed: {type(e).__name__}: {e}")
    sentence = redact(str(error))
    log.error("%s", sentence)
    _write_termination_message(termination_path, sentence)
    return error.code
