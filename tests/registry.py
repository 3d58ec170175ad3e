"""Registers models with real artifacts in a real MLflow server, and remembers their files so a
copy can be checked byte for byte."""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


def tree(root: Path) -> dict[str, str]:
    """relative path -> sha256, for every file under root (our own markers left out)."""
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            rel = str(path.relative_to(root))
            if not rel.startswith(".mlflow"):
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def mlflow_meta(name: str | None, version: str | None) -> dict[str, str]:
    """The `registered_model_meta` file that MLflow's own download of a `models:/` URI leaves
    beside MLmodel, written by MLflow's own code (None, None: a logged model), as `tree` lists
    it."""
    from mlflow.utils.yaml_utils import write_yaml

    with tempfile.TemporaryDirectory() as folder:
        meta = {"model_name": name, "model_version": version}
        write_yaml(
            folder, "registered_model_meta", meta, overwrite=True, ensure_yaml_extension=False
        )
        return tree(Path(folder))


def make_model_dir(root: Path, seed: int, big: int = 0) -> Path:
    """A model folder as MLflow logs one: MLmodel, a binary, nested data; `big` extra bytes."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "MLmodel").write_text(f"flavors:\n  python_function:\n    seed: {seed}\n")
    (root / "model.pkl").write_bytes(rng.randbytes(50_000 + seed))
    (root / "data" / "nested").mkdir(parents=True)
    (root / "data" / "nested" / "weights with space.bin").write_bytes(rng.randbytes(3000))
    (root / "requirements.txt").write_text("scikit-learn\n")
    if big:
        chunk = rng.randbytes(1 << 20)
        with open(root / "big.bin", "wb") as f:
            for _ in range(big >> 20):
                f.write(chunk)
    return root


def sharded_model(root: Path, shards: int, size: int, seed: int) -> Path:
    """A model of `shards` random files of `size` bytes each, and its MLmodel."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    for i in range(shards):
        (root / f"shard-{i}.bin").write_bytes(rng.randbytes(size))
    return root


@dataclass
class Registered:
    """name -> version -> expected tree"""

    versions: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


def register(
    tracking_uri: str,
    experiment: str,
    location: str | None,
    name: str,
    model: Path,
    registered: Registered | None = None,
) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment, location)
    run = client.create_run(exp_id)
    client.log_artifacts(run.info.run_id, str(model), "model")
    client.set_terminated(run.info.run_id)
    try:
        client.get_registered_model(name)
    except Exception:
        client.create_registered_model(name)
    mv = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    if registered is not None:  # remember the files, to check copies byte for byte
        version = str(mv.version)
        registered.versions.setdefault(name, {})[version] = tree(model) | mlflow_meta(name, version)
    return str(mv.version)
