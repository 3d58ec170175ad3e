#!/usr/bin/env bash
# The programs that make the pods we serve, where they are Python: JupyterHub's KubeSpawner, the
# current line and the 4.x line PrimeHub ships, and Spark's `spark-submit` (the pyspark package
# carries Spark's jars, its Kubernetes scheduler among them; it runs on the machine's Java 17),
# each in a virtualenv of its own (cached in
# $CLIENTS_CACHE, default ~/.cache/primehub-mlflow-webhook/clients-<hash of this list>), with
# escapism for PrimeHub's labels. Prints the folder holding the virtualenvs by name.
set -euo pipefail
clients=(
  "kubespawner-7 jupyterhub-kubespawner==7.1.0 escapism==1.1.0"
  "kubespawner-4 jupyterhub-kubespawner==4.3.0 escapism==1.1.0"
  "spark-4 pyspark==4.0.1"
)
cache=${CLIENTS_CACHE:-$HOME/.cache/primehub-mlflow-webhook}
out="$cache/clients-$(printf '%s\n' "${clients[@]}" | sha256sum | cut -c1-12)"
for entry in "${clients[@]}"; do
  read -r name packages <<<"$entry"
  venv="$out/$name"
  if [ ! -f "$venv/.complete" ]; then
    rm -rf "$venv" && mkdir -p "$out"
    python3 -m venv "$venv"  # in place: a virtualenv's scripts name its path
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q --disable-pip-version-check $packages >&2
    touch "$venv/.complete"
  fi
done
echo "$out"
