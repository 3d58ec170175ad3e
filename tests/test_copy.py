"""`mlflow-webhook copy-artifacts` against a real MLflow registry, a real S3 server (moto) and a
local artifact root, run as the init container runs it: a separate process with only its env."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Stores
from tests.procs import free_port, wait_until
from tests.registry import make_model_dir, mlflow_meta, register, tree
from tests.servers import launch_mlflow, wait_mlflow
from webhook.copier.staging import COMPLETE


def clean_env(**extra: str) -> dict[str, str]:
    """The process environment without any MLflow or AWS variable of the test process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    return {**env, **extra}


def copy(
    uri: str, dest: Path, env: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    with tempfile.TemporaryDirectory() as tmp:
        term = Path(tmp, "termination-log")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook",
                "copy-artifacts",
                uri,
                str(dest),
                "--termination-message-path",
                str(term),
                *args,
            ],
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        return result, term.read_text() if term.exists() else ""


def expected(stores: Stores, name: str, version: str) -> dict[str, str]:
    return stores.models.versions[name][version]


@pytest.mark.parametrize(
    ("uri", "name", "version"),
    [
        ("models:/churn%20model/1", "churn model", "1"),
        ("models:/churn model/2", "churn model", "2"),
        ("models:/churn%20model@champion", "churn model", "1"),
        ("models:/churn%20model/Production", "churn model", "2"),
        ("models:/churn%20model/latest", "churn model", "2"),
    ],
)
def test_served_artifacts_by_version_alias_stage_and_latest(
    stores: Stores, tmp_path: Path, uri: str, name: str, version: str
) -> None:
    dest = tmp_path / "models"
    result, term = copy(uri, dest, stores.mlflow.env)
    assert result.returncode == 0, result.stderr
    assert tree(dest) == expected(stores, name, version)
    assert f"copied version {version} of model '{name}' from mlflow-artifacts:" in result.stderr
    assert term == ""


def test_local_artifact_root_on_the_group_volume(stores: Stores, tmp_path: Path) -> None:
    result, _ = copy("models:/iris/1", tmp_path / "m", stores.mlflow.env)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "m") == expected(stores, "iris", "1")
    assert str(stores.group_volume) in result.stderr  # the source it read


def test_a_group_volume_that_is_not_mounted_is_named(stores: Stores, tmp_path: Path) -> None:
    """The registry holds a path on the group volume (an MLflow App's artifact root), and this
    container has no volume there: the message names the path and the mount it needs."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores.mlflow.url)
    root = "/project/ghost-team/phapplications/app1/mlruns"  # no such mount on this machine
    exp = client.create_experiment(f"ghost-{tmp_path.name}", artifact_location=root)
    run = client.create_run(exp)
    client.create_registered_model(f"ghost-{tmp_path.name}")
    mv = client.create_model_version(
        f"ghost-{tmp_path.name}", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    result, term = copy(
        f"models:/ghost-{tmp_path.name}/{mv.version}", tmp_path / "m", stores.mlflow.env
    )
    assert result.returncode == 3
    assert f"are at {run.info.artifact_uri}/model, which no volume mounted in this" in term
    assert "mount the volume that has them at /project/ghost-team" in term
    assert "artifactVolume {groupVolume: true}" in term


def test_s3_compatible_store(stores: Stores, tmp_path: Path) -> None:
    result, _ = copy("models:/fraud/1", tmp_path / "m", {**stores.mlflow.env, **stores.s3.env})
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "m") == expected(stores, "fraud", "1")
    assert "from s3://mlflow/mlruns/" in result.stderr


ODD_NAMES = [
    "a b.txt",
    "pct%20x.bin",
    "hash#1.txt",
    "q?x=1.txt",
    "plus+sign.txt",
    "\u00fcn\u00efc\u00f8d\u00e9\u6f22.txt",
    "-dash.txt",
    "empty.txt",
    "sub dir/deep%2F/x.txt",
    "semi;colon&amp=1.txt",
    "quote'\".txt",
    "space at end .txt",
]


@pytest.mark.parametrize("store", ["served", "group", "s3"])
def test_odd_file_names_are_copied_as_mlflow_itself_downloads_them(
    stores: Stores, tmp_path: Path, store: str
) -> None:
    """Through the artifact proxy, MLflow's upload already stores `hash#1.txt` as `hash` and
    `pct%20x.bin` as `pct x.bin`: there MLflow's own download is the judge, and the copy must
    give the model server exactly what MLflow would. S3 and the group volume keep the names as
    logged, and the copy keeps them too (MLflow's own download from a local artifact root
    fails on `hash#1.txt`)."""
    import mlflow

    src = tmp_path / "src"
    for i, name in enumerate(ODD_NAMES):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"" if name == "empty.txt" else b"%d" % i * 10)
    location = {"served": None, "group": str(stores.group_volume), "s3": "s3://mlflow/mlruns"}
    name = f"odd-{store}"
    version = register(stores.mlflow.url, store, location[store], name, src)
    env = {**stores.mlflow.env, **stores.s3.env}
    result, _ = copy(f"models:/{name}/{version}", tmp_path / "copy", env)
    assert result.returncode == 0, result.stderr
    ours = {k: v for k, v in tree(tmp_path / "copy").items() if k != COMPLETE}
    if store == "served":
        mlflow.set_tracking_uri(stores.mlflow.url)
        uri, into = f"models:/{name}/{version}", str(tmp_path / "mlflow")
        theirs = tree(Path(mlflow.artifacts.download_artifacts(uri, dst_path=into)))
    else:
        theirs = tree(src)
    assert ours == theirs
    assert len(ours) == len(ODD_NAMES)


def test_a_version_without_artifacts_is_not_a_model(stores: Stores, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores.mlflow.url)
    client.create_registered_model("hollow")
    client.create_model_version("hollow", source="s3://mlflow/nothing-here/model")
    result, term = copy("models:/hollow/1", tmp_path / "m", {**stores.mlflow.env, **stores.s3.env})
    assert result.returncode == 3, result.stderr
    assert (
        'there are no artifacts for version 1 of model "hollow" at s3://mlflow/nothing-here/model'
        in term
    )
    assert list((tmp_path / "m").iterdir()) == []


def test_basic_auth(stores: Stores, tmp_path: Path) -> None:
    result, _ = copy("models:/guarded/1", tmp_path / "ok", stores.auth.env)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "ok") == expected(stores, "guarded", "1")

    wrong = {**stores.auth.env, "MLFLOW_TRACKING_PASSWORD": "not-the-password-42"}
    result, term = copy("models:/guarded/1", tmp_path / "no", wrong)
    assert result.returncode == 4
    assert "refused access" in term and "tracking credentials" in term
    assert "not-the-password-42" not in result.stderr + result.stdout + term
    assert list((tmp_path / "no").iterdir()) == []


def test_a_token_read_from_a_file_works_and_a_broken_one_is_never_shown(
    stores: Stores, tmp_path: Path
) -> None:
    """A Secret made from a file gives a token with a final newline: it works (before, the
    request was refused locally, and its error quoted the token). One that is broken inside
    fails, and no message shows it."""
    env = {**stores.mlflow.env, "MLFLOW_TRACKING_TOKEN": "tok-s3cr3t-42\n"}
    result, _ = copy("models:/churn%20model/1", tmp_path / "ok", env)
    assert result.returncode == 0, result.stderr
    env["MLFLOW_TRACKING_TOKEN"] = "tok-s3cr3t-42\nsecond-line"
    result, term = copy("models:/churn%20model/1", tmp_path / "no", env, "--timeout", "10")
    assert result.returncode != 0
    assert "s3cr3t" not in result.stderr + result.stdout + term


@pytest.mark.parametrize(
    ("uri", "sentence"),
    [
        ("models:/nope/1", 'model "nope" does not exist in the group\'s MLflow registry'),
        (
            "models:/churn%20model/7",
            'version 7 of model "churn model" does not exist in the group\'s MLflow registry',
        ),
        (
            "models:/churn%20model@nobody",
            'alias "nobody" of model "churn model" does not exist in the group\'s MLflow registry',
        ),
        (
            "models:/churn%20model/Staging",
            'the Staging version of model "churn model" does not exist',
        ),
    ],
)
def test_what_does_not_exist_fails_at_once_with_a_plain_sentence(
    stores: Stores, tmp_path: Path, uri: str, sentence: str
) -> None:
    result, term = copy(uri, tmp_path / "m", stores.mlflow.env, "--timeout", "120")
    assert result.returncode == 3, result.stderr
    assert sentence in term
    assert term.count("\n") == 1
    assert "retrying" not in result.stderr  # not retried
    assert not (tmp_path / "m" / "MLmodel").exists()


def test_server_down_fails_after_retries(tmp_path: Path) -> None:
    with contextlib.closing(__import__("socket").socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        result, term = copy(
            "models:/m/1",
            tmp_path / "m",
            {"MLFLOW_TRACKING_URI": f"http://user:pw-in-url@127.0.0.1:{port}"},
            "--timeout",
            "10",  # the first attempt includes importing MLflow's client: room for a retry
        )
    assert result.returncode == 6
    assert 'could not resolve version 1 of model "m" after' in term
    assert "retrying" in result.stderr
    assert "pw-in-url" not in result.stderr + term


@pytest.fixture(scope="module")
def big(stores: Stores, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 300 MB model served by the tracking server: long enough to watch a copy happen."""
    src = make_model_dir(tmp_path_factory.mktemp("big") / "src", 9, big=300_000_000)
    return f"models:/big/{register(stores.mlflow.url, 'served', None, 'big', src, stores.models)}"


def test_a_long_copy_reports_progress_and_a_summary(
    stores: Stores, big: str, tmp_path: Path
) -> None:
    result, _ = copy(big, tmp_path / "m", stores.mlflow.env, "--progress-every", "0.05")
    assert result.returncode == 0, result.stderr
    assert re.search(r"INFO copied \d+ files, [0-9.]+ MB \([0-9.]+ [KMG]?B/s\)", result.stderr)
    summary = result.stderr.strip().splitlines()[-1]
    assert re.search(
        # 5 logged files, and the registered_model_meta MLflow's own download adds
        r"copied version \d+ of model 'big' from mlflow-artifacts:/.*: 6 files, "
        r"28[0-9.]+ MB in [0-9.]+ s \(.*/s\); total [0-9.]+ s",
        summary,
    ), summary
    assert tree(tmp_path / "m") == expected(stores, "big", big.rsplit("/", 1)[1])


def test_server_dying_mid_copy_leaves_nothing(stores: Stores, big: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        # A second server process over the same store, so killing it harms no other test.
        doomed = wait_mlflow(launch_mlflow(stack, stores.root / "main", "doomed"))
        dest = tmp_path / "m"
        term = tmp_path / "term"
        copier = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                "copy-artifacts",
                big,
                str(dest),
                "--timeout",
                "4",
                "--termination-message-path",
                str(term),
            ],
            env=clean_env(MLFLOW_TRACKING_URI=doomed.url),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        staging = dest / ".mlflow-staging"
        wait_until(
            lambda: any(p.is_file() and p.stat().st_size for p in staging.rglob("*")),
            60,
            "download started",
            copier,
        )
        os.killpg(doomed.proc.pid, signal.SIGKILL)  # the server and its workers
        output, _ = copier.communicate(timeout=120)
    assert copier.returncode == 6, output
    assert list(dest.iterdir()) == []
    assert "big" in term.read_text()


def test_destination_not_writable(stores: Stores, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result, term = copy("models:/churn%20model/1", blocker / "models", stores.mlflow.env)
    assert result.returncode == 5
    assert "cannot create the destination" in term


def test_foreign_files_are_never_overwritten(stores: Stores, tmp_path: Path) -> None:
    dest = tmp_path / "m"
    dest.mkdir()
    (dest / "precious.txt").write_text("mine")
    result, term = copy("models:/churn%20model/1", dest, stores.mlflow.env)
    assert result.returncode == 5 and "refusing to overwrite" in term
    assert (dest / "precious.txt").read_text() == "mine"


def test_restarts_finish_at_once_or_start_over(stores: Stores, tmp_path: Path) -> None:
    dest = tmp_path / "m"
    first, _ = copy("models:/churn%20model/1", dest, stores.mlflow.env)
    assert first.returncode == 0
    again, _ = copy("models:/churn%20model/1", dest, stores.mlflow.env)
    assert again.returncode == 0 and "already complete" in again.stderr
    # The alias moved to another version: the folder is replaced, not merged.
    other, _ = copy("models:/churn%20model/2", dest, stores.mlflow.env)
    assert other.returncode == 0
    assert tree(dest) == expected(stores, "churn model", "2")
    # What an interrupted copy leaves (journal, staging, some files) is wiped and redone.
    for entry in list(dest.iterdir()):
        if entry.name == ".mlflow-model.json":
            entry.unlink()
    (dest / ".mlflow-copy-in-progress").touch()
    (dest / ".mlflow-staging" / "model").mkdir(parents=True)
    (dest / "MLmodel").write_text("half")
    redo, _ = copy("models:/churn%20model/1", dest, stores.mlflow.env)
    assert redo.returncode == 0, redo.stderr
    assert tree(dest) == expected(stores, "churn model", "1")


@pytest.mark.parametrize(
    ("uri", "env", "code", "words"),
    [
        (
            "s3://bucket/model",
            {"MLFLOW_TRACKING_URI": "http://127.0.0.1:1"},
            2,
            "not a models:/ URI",
        ),
        ("models:/m/1", {}, 2, "MLFLOW_TRACKING_URI is not set"),
    ],
)
def test_usage_errors(tmp_path: Path, uri: str, env: dict[str, str], code: int, words: str) -> None:
    result, term = copy(uri, tmp_path / "m", env)
    assert result.returncode == code and words in term


def test_an_mlflow3_logged_model_is_copied(stores: Stores, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=stores.mlflow.url)
    exp = client.create_experiment(f"logged-{tmp_path.name}")
    logged = client.create_logged_model(exp, name="agent")
    model = make_model_dir(tmp_path / "src", 21)
    client.log_model_artifacts(logged.model_id, str(model))
    result, _ = copy(f"models:/{logged.model_id}", tmp_path / "m", stores.mlflow.env)
    assert result.returncode == 0, result.stderr
    assert tree(tmp_path / "m") == tree(model) | mlflow_meta(None, None)
    missing, term = copy("models:/m-0123456789abcdef", tmp_path / "n", stores.mlflow.env)
    assert missing.returncode == 3
    assert 'logged model "m-0123456789abcdef" does not exist' in term


def test_a_tracking_uri_that_is_no_url_is_a_usage_error(tmp_path: Path) -> None:
    result, term = copy("models:/m/1", tmp_path / "m", {"MLFLOW_TRACKING_URI": "not a url:p4ss@x"})
    assert result.returncode == 2
    assert "MLFLOW_TRACKING_URI is not a tracking server's URL" in term
    assert "p4ss" not in term + result.stderr


def test_a_complete_pinned_version_needs_no_registry_at_restart(
    stores: Stores, tmp_path: Path
) -> None:
    dest = tmp_path / "m"
    first, _ = copy("models:/churn%20model/2", dest, stores.mlflow.env)
    assert first.returncode == 0, first.stderr
    # The init container restarts (the pod was evicted and came back) while the registry is away.
    away = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}
    again, _ = copy("models:/churn%20model/2", dest, away, "--timeout", "2")
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stderr
    assert tree(dest) == expected(stores, "churn model", "2")
    # An alias may point elsewhere by now: that one is asked again, and cannot be answered.
    moved, _ = copy("models:/churn%20model@champion", dest, away, "--timeout", "2")
    assert moved.returncode == 6


@pytest.mark.parametrize(
    ("server", "path", "code"),
    [("mlflow", "missing/file", 3), ("auth", "any/file", 4)],
)
def test_http_errors_of_the_artifact_proxy_are_classified(
    stores: Stores, server: str, path: str, code: int
) -> None:
    """Real answers of the tracking server's artifact proxy (mlflow-artifacts:), as MLflow's
    client raises them: 404 is "not found", 401 is "refused", neither is retried."""
    import requests

    from webhook.copier.errors import CopyError, classify
    from webhook.modeluri import parse_model_uri

    url = getattr(stores, server).url
    reply = requests.get(f"{url}/api/2.0/mlflow-artifacts/artifacts/{path}", timeout=10)
    with pytest.raises(requests.HTTPError) as raised:
        reply.raise_for_status()
    error = classify(
        raised.value, parse_model_uri("models:/m/1"), "mlflow-artifacts:/x", "download"
    )
    assert isinstance(error, CopyError) and error.code == code


def test_telemetry_is_off(tmp_path: Path) -> None:
    """Clusters are often offline: MLflow's client must not call home."""
    code = (
        "import os\n"
        "from pathlib import Path\n"
        "from webhook.copier.command import copy_model\n"
        "from webhook.modeluri import parse_model_uri\n"
        "try:\n"
        f"    copy_model(parse_model_uri('models:/m/1'), Path({str(tmp_path / 'm')!r}), 1)\n"
        "except Exception:\n"
        "    pass\n"
        "from mlflow.telemetry.utils import is_telemetry_disabled\n"
        "print(is_telemetry_disabled())\n"
    )
    env = clean_env(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr
