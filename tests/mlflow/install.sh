#!/usr/bin/env bash
# Installs the MLflow tracking server the tests run (pinned, with basic auth) into its own
# virtualenv, cached outside the repository; prints the virtualenv's bin directory.
# Its own env keeps the full server (sqlalchemy, flask, ...) out of the env under test, which has
# only mlflow-skinny, as the init container image does.
set -euo pipefail
version=3.17.2
venv=${MLFLOW_SERVER_VENV:-$HOME/.cache/primehub-mlflow-webhook/mlflow-server-$version}
if [ ! -x "$venv/bin/mlflow" ] || ! "$venv/bin/python" -c "import mlflow.server.auth" 2>/dev/null; then
  start=$SECONDS
  echo "installing mlflow $version server into $venv ..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "mlflow[auth]==$version" "boto3==1.43.11" >&2
  echo "installed mlflow server in $((SECONDS - start)) s" >&2
fi
echo "$venv/bin"
