#!/usr/bin/env bash
# Installs the MLflow server with Kubeflow's Kubernetes workspace provider and auth app
# (mlflow-kubernetes-plugins: namespaces are workspaces, requests authorized by the API server)
# into its own virtualenv, cached outside the repository; prints the virtualenv's bin directory.
# Separate from install.sh because the plugin needs Python >= 3.12 and brings `kubernetes`.
# Python 3.12: $MLFLOW_K8S_PYTHON, else a working python3.12 on PATH, else pyenv's newest 3.12.
set -euo pipefail
version=3.17.2
plugins=2.1.0
venv=${MLFLOW_K8S_SERVER_VENV:-$HOME/.cache/primehub-mlflow-webhook/mlflow-kubernetes-$version}
ready() {
  [ -x "$venv/bin/mlflow" ] &&
    "$venv/bin/python" -c "from importlib.util import find_spec as f
assert f('mlflow_kubernetes_plugins') and f('kubernetes')" 2>/dev/null
}
find_python() {
  local p
  for p in ${MLFLOW_K8S_PYTHON:-} python3.12; do
    if "$p" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
      command -v "$p"
      return
    fi
  done
  local root
  root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
  p=$(ls -d "$root"/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -n 1)
  if [ -n "$p" ]; then
    echo "$p"
    return
  fi
  echo "no Python 3.12 found: set MLFLOW_K8S_PYTHON, or run 'pyenv install 3.12'" >&2
  return 1
}
if ! ready; then
  start=$SECONDS
  python=$(find_python)
  echo "installing mlflow $version + mlflow-kubernetes-plugins $plugins ($python) into $venv ..." >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    "mlflow==$version" "mlflow-kubernetes-plugins==$plugins" "boto3==1.43.11" >&2
  echo "installed mlflow kubernetes server in $((SECONDS - start)) s" >&2
fi
echo "$venv/bin"
