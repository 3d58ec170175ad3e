"""How copy-artifacts fails: exit codes by cause, one plain sentence each, never a secret, and
which client errors are worth another try (by status, not by text)."""

from __future__ import annotations

import os
import re
from enum import IntEnum

from webhook.brief import brief
from webhook.copier import identity
from webhook.copier.rest import RestError
from webhook.modeluri import ModelUri


class Exit(IntEnum):
    OK = 0
    FAILED = 1  # anything unexpected
    USAGE = 2  # bad model URI, no usable MLFLOW_TRACKING_URI
    NOT_FOUND = 3  # model, version, alias or stage or its artifacts do not exist
    AUTH = 4  # 401/403 from the registry or the artifact store
    DESTINATION = 5  # the destination is not writable, or holds files that are not ours
    UNAVAILABLE = 6  # transient failures (refused, 5xx, timeouts) outlasted the time limit


class CopyError(Exception):
    def __init__(self, code: Exit, sentence: str) -> None:
        super().__init__(sentence)
        self.code = code


class Transient(Exception):
    """Worth another try: connection refused, 5xx, timeouts."""


class EngineError(Exception):
    """The S3 engine (s5cmd) failed: what it said, with the store's error codes and statuses."""


_STORE_AUTH = re.compile(
    r"\b(AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|status code: 40[13])\b"
)
_STORE_MISSING = re.compile(r"\b(NoSuchBucket|NoSuchKey|status code: 404)\b")
_UNTRUSTED = re.compile(r"CERTIFICATE_VERIFY_FAILED|x509: certificate")


def _untrusted(where: str) -> CopyError:
    return CopyError(
        Exit.AUTH,
        f"the certificate of {where} is not trusted: give the group's MLflowSetting the "
        "CA that signed it (caBundle)",
    )


def _classify_engine(error: EngineError, uri: ModelUri, where: str) -> Exception:
    """s5cmd reports the AWS SDK's error codes and HTTP statuses in its text: those decide."""
    text = str(error)
    if _UNTRUSTED.search(text):
        return _untrusted(where)
    if found := _STORE_AUTH.search(text):
        return CopyError(
            Exit.AUTH,
            f"the artifact store refused access to {where} ({found[1]}): "
            "check the artifact credentials",
        )
    if found := _STORE_MISSING.search(text):
        return CopyError(
            Exit.NOT_FOUND,
            f"the artifacts of {uri.describe()} are missing from {where} ({found[1]})",
        )
    if "NoCredentialProviders" in text:
        return _no_credentials(where)
    return Transient(brief(redact(text), 500))


def _no_credentials(where: str) -> CopyError:
    return CopyError(
        Exit.AUTH,
        f"no credentials for the artifact store at {where}: "
        "check the artifact env of the group's setting",
    )


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_AUTHORIZATION = re.compile(r"\b(Bearer|Basic)\s+[^\s'\"]+", re.I)


def redact(text: str) -> str:
    """No credentials in output: drop user:password@ from any URL in the text, and what follows
    Bearer or Basic (requests quotes a refused header's value in its error)."""
    return _AUTHORIZATION.sub(r"\1 ***", _USERINFO.sub("***@", text))


def _refused_identity(code: str) -> CopyError:
    """The MLflow server refused the pod's Kubernetes identity: whose, and what to grant."""
    account = identity.service_account() or "the pod's ServiceAccount"
    workspace = identity.workspace()
    if code == "PERMISSION_DENIED" and workspace is not None:
        return CopyError(
            Exit.AUTH,
            f"{account} may not read the registered model in MLflow workspace {workspace!r}: "
            "an admin grants it a Role there on API group mlflow.kubeflow.org, resources "
            "registeredmodels and experiments, verbs get and list",
        )
    if code == "PERMISSION_DENIED":
        return CopyError(
            Exit.AUTH,
            f"the group's MLflow server does not let {account} read the registered model",
        )
    return CopyError(
        Exit.AUTH,
        f"the group's MLflow server refused the token of {account} (MLFLOW_TRACKING_AUTH="
        f"{os.environ.get('MLFLOW_TRACKING_AUTH')}): expired, or not one the cluster's API "
        "server issued",
    )


def _by_error_code(code: str, text: str, uri: ModelUri, where: str, what: str) -> Exception:
    """An MLflow server's error code (MlflowException's, or the REST answer's) decides."""
    if code == "FEATURE_DISABLED" and identity.workspace() is not None:
        return CopyError(
            Exit.USAGE,
            f"the group's MLflow server has no workspaces, and the pod names workspace "
            f"{identity.workspace()!r} ({identity.named_by()}): the MLflowSetting's workspace "
            "needs a server started with --enable-workspaces (MLflow >= 3.10)",
        )
    if code in ("UNAUTHENTICATED", "PERMISSION_DENIED", "CUSTOMER_UNAUTHORIZED"):
        if what == "resolve" or where.startswith("mlflow-artifacts:"):
            if identity.uses_file_token():
                return _refused_identity(code)
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
    return Transient(text)


def classify(error: BaseException, uri: ModelUri, where: str, what: str) -> Exception:
    """Maps a client error to a final CopyError or a Transient one, by status, not by text."""
    if isinstance(error, Transient):  # already judged (an engine stopped at the deadline)
        return error
    if isinstance(error, EngineError):
        return _classify_engine(error, uri, where)
    if isinstance(error, RestError):
        return _by_error_code(error.error_code, brief(redact(str(error)), 500), uri, where, what)
    import requests
    from requests.exceptions import ChunkedEncodingError

    text = brief(redact(str(error)), 500) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in str(error):  # not transient: a CA is missing
        return _untrusted(where)
    if isinstance(error, requests.HTTPError) and error.response is not None:
        # mlflow-artifacts: listings and downloads go through the tracking server over HTTP.
        status = error.response.status_code
        if status in (401, 403):
            return CopyError(
                Exit.AUTH,
                f"the group's MLflow server refused access to the artifacts at {where} "
                f"(HTTP {status}): check the tracking credentials",
            )
        if status == 404:
            return CopyError(
                Exit.NOT_FOUND, f"the artifacts of {uri.describe()} are missing from {where}"
            )
        if status >= 500 or status == 429:
            return Transient(text)
        return CopyError(
            Exit.FAILED, f"copying {uri.describe()} failed: HTTP {status} from {where}"
        )
    if isinstance(error, requests.ConnectionError | requests.Timeout | ChunkedEncodingError):
        return Transient(text)
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        code = error.error_code
        if code == "INTERNAL_ERROR" and "downloading one or more artifacts" in str(error):
            # MLflow folds per-file store errors into text; the status is all that is left.
            codes = re.findall(r"An error occurred \((\w+)\)", str(error))
            if any(s in ("403", "401", "AccessDenied", "InvalidAccessKeyId") for s in codes):
                code = "PERMISSION_DENIED"
            elif any(s in ("404", "NoSuchKey", "NoSuchBucket") for s in codes):
                code = "RESOURCE_DOES_NOT_EXIST"
        return _by_error_code(code, text, uri, where, what)
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
        return Transient(text)
    if isinstance(error, NoCredentialsError):
        return _no_credentials(where)
    if isinstance(error, EndpointConnectionError | ConnectionError | TimeoutError):
        return Transient(text)
    if isinstance(error, FileNotFoundError):
        return CopyError(
            Exit.NOT_FOUND,
            f"the artifacts of {uri.describe()} are not at {where}; "
            "if they are on the group volume, is it mounted there?",
        )
    if isinstance(error, PermissionError):
        return CopyError(Exit.AUTH, f"no permission to read the artifacts at {where}")
    return CopyError(Exit.FAILED, f"copying {uri.describe()} failed: {text}")
