"""Getting a version's files through the tracking server's artifact proxy (`mlflow-artifacts:`,
what `mlflow server` serves by default since MLflow 2.0), over the REST API MLflow's own client
uses for it (mlflow/store/artifact/http_artifact_repo.py), without importing MLflow: about a
second and 70 MB less before the first byte. Each folder is listed, and its files start
downloading as soon as it is; every file is streamed to disk in 1 MB pieces, several at a time
over kept-alive connections, and must arrive with the size the listing gave. Nothing is resumed: the
proxy gives no checksum by which a restarted copy could trust a file it finds."""

from __future__ import annotations

import os
import posixpath
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse, urlunparse

from webhook.copier import rest
from webhook.copier.errors import CopyError, Exit, Transient

if TYPE_CHECKING:
    from requests import Session

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
WORKERS = 8  # files at once: the proxy reads each from its store in a request thread of its own
CHUNK = 1 << 20


@dataclass(frozen=True)
class File:
    path: str  # relative to the version's folder
    size: int | None  # as listed (None if the server did not say)


def handles(source: str) -> bool:
    """Whether this engine fetches `source`: the proxy of a server these calls reach as MLflow's
    client would (rest.speaks)."""
    tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
    return urlparse(source).scheme == "mlflow-artifacts" and rest.speaks(tracking)


def locate(source: str, tracking: str) -> tuple[str, str]:
    """The proxy's URL and the folder's path under its artifact root, as MLflow resolves an
    `mlflow-artifacts:` URI: the host it names, else the tracking server's, and the tracking
    URI's scheme and path prefix."""
    server, parsed = urlparse(tracking), urlparse(source)
    netloc = parsed.netloc or server.netloc
    base = urlunparse((server.scheme, netloc, server.path.rstrip("/") + ARTIFACTS, "", "", ""))
    return base, parsed.path.strip("/")


class Stopped(Exception):
    """Another file failed: this one stops too."""


class _Client:
    """One kept-alive session per worker thread, the MLflow client's request options, and the
    deadline and stop signal every piece of a file is checked against."""

    def __init__(self, base: str, root: str, deadline: float) -> None:
        self.base, self.root, self.deadline = base, root, deadline
        self.options = rest.options()
        self.stop = threading.Event()
        self._local = threading.local()

    def session(self) -> Session:
        session: Session | None = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
        return session

    def listing(self, folder: str) -> tuple[list[File], list[str]]:
        """The files and the folders in `folder` (relative to the version's folder)."""
        path = posixpath.join(self.root, folder) if folder else self.root
        response = self.session().get(self.base, params={"path": path}, **self.options)
        rest.check(response)
        files, folders = [], []
        for item in response.json().get("files", []):
            rel = _safe(posixpath.join(folder, str(item["path"])))
            if item.get("is_dir"):
                folders.append(rel)
            else:
                size = item.get("file_size")
                files.append(File(rel, int(size) if size is not None else None))
        return files, folders

    def download(self, file: File, staging: Path) -> int:
        target = staging / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{self.base}/{quote(posixpath.join(self.root, file.path))}"
        written = 0
        with self.session().get(url, stream=True, **self.options) as response:
            rest.check(response, by_status=False)
            with open(target, "wb") as out:
                for chunk in response.iter_content(CHUNK):
                    if self.stop.is_set():
                        raise Stopped
                    if time.monotonic() > self.deadline:
                        late = "the server did not send the artifacts before the time limit"
                        raise Transient(late)
                    written += out.write(chunk)
        if file.size is not None and written != file.size:
            raise Transient(f"{file.path} arrived short: {written} of {file.size} bytes")
        return written


def _safe(rel: str) -> str:
    """A listed path, refused if it would land outside the destination (MLflow's client refuses
    the same: validate_path_is_safe)."""
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise CopyError(Exit.FAILED, f"the artifact proxy listed an unsafe path: {rel!r}")
    return str(path)


def fetch(source: str, staging: Path, deadline: float) -> tuple[int, int]:
    """Downloads the folder `source` names into `staging`; returns its files and bytes. A
    folder's files start downloading as soon as it is listed, its folders are listed beside
    them: the first byte does not wait for the whole tree to be listed (about 30 listings for a
    model of 3,000 files, each a request a shared server authorizes)."""
    base, root = locate(source, os.environ["MLFLOW_TRACKING_URI"])
    client = _Client(base, root, deadline)
    files = size = 0
    with ThreadPoolExecutor(WORKERS) as pool:
        pending: set[Future[Any]] = {pool.submit(client.listing, "")}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    result = future.result()  # the first failure stops the rest
                    if isinstance(result, int):
                        files, size = files + 1, size + result
                        continue
                    listed, folders = result
                    # Its folders first: the pool runs tasks in order, and a listing queued
                    # behind a folder's every file would wait for them all.
                    pending |= {pool.submit(client.listing, f) for f in folders}
                    pending |= {pool.submit(client.download, f, staging) for f in listed}
        except BaseException:  # a failure, or SIGTERM in the main thread: the pool is left at once
            client.stop.set()
            for future in pending:
                future.cancel()
            raise
    return files, size


def count_entries(source: str) -> int:
    """How many files and folders the folder `source` names holds at its top (the doctor)."""
    base, root = locate(source, os.environ["MLFLOW_TRACKING_URI"])
    files, folders = _Client(base, root, time.monotonic() + 30).listing("")
    return len(files) + len(folders)
