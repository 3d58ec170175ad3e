"""`mlflow-webhook copy-artifacts`: put one registered model version (or logged model) into a
folder, or fail loudly: resolve with MLflow's client, fetch into a staging folder, move into
place, mark complete; exit codes and a termination message by cause (errors.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any, TypeGuard

from webhook.copier import s3
from webhook.copier.client_env import quiet_client, tracking_uri_problem
from webhook.copier.errors import CopyError, Exit, redact
from webhook.copier.fetch import Progress, fetch, human, tree_size
from webhook.copier.identity import identity_problem
from webhook.copier.resolve import Resolved, resolve
from webhook.copier.retry import with_retries
from webhook.copier.staging import STAGING, Journal, clear, mark_complete, prepare
from webhook.modeluri import ModelUri, ModelUriError, parse_model_uri

log = logging.getLogger("webhook.copy")
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
REGISTERED_MODEL_META = "registered_model_meta"


def _holds(record: dict[str, Any] | None, **wanted: str) -> TypeGuard[dict[str, Any]]:
    """The completion record found in the destination says it holds this."""
    return record is not None and all(record.get(k) == v for k, v in wanted.items())


def copy_model(uri: ModelUri, dest: Path, timeout: float, progress_every: float = 10.0) -> Resolved:
    """Resolves and copies; returns what was copied. Raises CopyError with the exit code."""
    problem = tracking_uri_problem() or identity_problem()
    if problem:
        raise CopyError(Exit.USAGE, problem)
    quiet_client(request_timeout=60)  # our retries, with a deadline, replace MLflow's
    start = time.monotonic()
    deadline = start + timeout
    existing = prepare(dest)
    if uri.pinned and _holds(existing, name=uri.model_id or uri.name, version=uri.version or ""):
        # A version (or logged model) never changes: what is here is it, registry or not.
        log.info("%s is already complete in %s", uri.describe(), dest)
        return Resolved(existing["name"], existing["version"], str(existing.get("source", "")))
    registry = redact(os.environ.get("MLFLOW_REGISTRY_URI") or os.environ["MLFLOW_TRACKING_URI"])
    found: Resolved = with_retries(uri, deadline, "resolve", lambda: resolve(uri), registry)
    log.info(
        "resolved %s to version %s at %s in %.2f s",
        uri,
        found.version,
        redact(found.source),
        time.monotonic() - start,
    )
    if _holds(existing, name=found.name, version=found.version, source=found.source):
        log.info(
            "version %s of model %r is already complete in %s", found.version, found.name, dest
        )
        return found
    copy_start = time.monotonic()
    journal = Journal(dest, found.source)
    if journal.begin():
        log.info("resuming an interrupted copy of %s", redact(found.source))
    staging = dest / STAGING
    try:
        with Progress(staging, progress_every):
            local = with_retries(
                uri,
                deadline,
                "download",
                lambda: fetch(found.source, staging, uri, journal, deadline),
                redact(found.source),
            )
        if local.is_dir():
            for entry in local.iterdir():
                entry.rename(dest / entry.name)
        else:
            local.rename(dest / local.name)
        shutil.rmtree(staging)
        if (dest / "MLmodel").is_file():
            write_registered_model_meta(dest, found)
        journal.end()
        files, size = tree_size(dest)
        record = {
            "name": found.name,
            "version": found.version,
            "source": found.source,
            "files": files,
            "bytes": size,
        }
        mark_complete(dest, record)
    except CopyError as e:
        if e.code is Exit.UNAVAILABLE and s3.handles(found.source):
            # The store went away: the next attempt (the init container restarted) keeps what
            # the journal vouches for. Only the journal and the hidden staging folder remain.
            journal.begin()
        else:
            _clear(dest)
        raise
    except BaseException:
        _clear(dest)
        raise
    now = time.monotonic()
    log.info(
        "copied version %s of model %r from %s: %d files, %s in %.2f s (%s/s); total %.2f s; "
        "peak memory %s",
        found.version,
        found.name,
        redact(found.source),
        files,
        human(size),
        now - copy_start,
        human(size / max(now - copy_start, 1e-9)),
        now - start,
        peak_memory(),
    )
    return found


def peak_memory() -> str:
    """This process's peak resident memory, and the largest of the engine processes it ran
    (s5cmd, sampled every 0.1 s): the init container's memory limit must hold their sum."""
    own, engine = s3.resident_peak("self"), s3.engine_peak()
    return f"{human(own)} (copy-artifacts) + {human(engine)} (engine)"


def _clear(dest: Path) -> None:
    with contextlib.suppress(OSError):
        clear(dest)  # nothing that looks like a model is left behind


def write_registered_model_meta(dest: Path, found: Resolved) -> None:
    """What MLflow's own download of a `models:/` URI leaves beside MLmodel
    (mlflow/store/artifact/models_artifact_repo.py): which registered version this is (nothing
    for a logged model), so the folder is the one MLflow would have made."""
    import yaml

    name, version = (found.name, found.version) if found.version else (None, None)
    meta = {"model_name": name, "model_version": version}
    text = yaml.safe_dump(meta, default_flow_style=False, allow_unicode=True, sort_keys=True)
    (dest / REGISTERED_MODEL_META).write_text(text, encoding="utf-8")


def _write_termination_message(path: Path | None, sentence: str) -> None:
    target = path or DEFAULT_TERMINATION_LOG
    if path is None and not target.exists():
        return  # not in a pod
    with contextlib.suppress(OSError):
        target.write_text(sentence + "\n")


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so the copy cleans up what it staged


def run(
    pairs: list[tuple[str, Path]],
    timeout: float,
    termination_path: Path | None,
    progress_every: float = 10.0,
) -> int:
    """Copies each model into its folder, in turn; the first failure ends it (its code and
    sentence are the command's)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr
    )
    for noisy in ("mlflow", "botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, _on_sigterm)
    deadline = time.monotonic() + timeout
    try:
        models = [(parse_model_uri(text), dest) for text, dest in pairs]
    except ModelUriError as e:
        return _failed(CopyError(Exit.USAGE, str(e)), termination_path)
    for uri, dest in models:
        try:
            copy_model(uri, dest, max(deadline - time.monotonic(), 1.0), progress_every)
        except CopyError as e:
            return _failed(e, termination_path)
        except KeyboardInterrupt:
            sentence = "the copy was interrupted; nothing was left in place"
            return _failed(CopyError(Exit.FAILED, sentence), termination_path)
        except Exception as e:  # a bug or an error nobody classified: still one plain sentence
            log.debug("unexpected error", exc_info=True)
            sentence = f"copying {uri} failed: {type(e).__name__}: {e}"
            return _failed(CopyError(Exit.FAILED, sentence), termination_path)
    return Exit.OK


def _failed(error: CopyError, termination_path: Path | None) -> int:
    sentence = redact(str(error))
    log.error("%s", sentence)
    _write_termination_message(termination_path, sentence)
    return error.code
