#!/usr/bin/env bash
# Builds the image with what these machines have (no Docker engine, no network inside a build):
# a Debian bookworm base made by mmdebstrap from Debian's packages (python3, python3-venv) and
# imported with podman, wheels made here with pip, then the Dockerfile built by buildah with
# chroot isolation (BASE and WHEELS=given build arguments). Cached in $IMAGE_CACHE (default
# ~/.cache/primehub-mlflow-webhook/image) by the hash of what goes in; prints the image name.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${IMAGE_CACHE:-$HOME/.cache/primehub-mlflow-webhook/image}
mkdir -p "$cache"
sudo=$([ "$(id -u)" = 0 ] || echo sudo)
for tool in mmdebstrap buildah podman; do
  if ! command -v "$tool" >/dev/null; then
    echo "installing mmdebstrap, buildah and podman from Debian's packages ..." >&2
    $sudo apt-get install -y -q mmdebstrap buildah podman >/dev/null 2>&1 ||
      { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q mmdebstrap buildah podman >/dev/null; }
    break
  fi
done

base=localhost/mlflow-webhook-base:bookworm
if ! podman image exists "$base"; then
  if [ ! -f "$cache/base.tar" ]; then
    start=$SECONDS
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv bookworm "$cache/base.tmp.tar" >&2
    mv "$cache/base.tmp.tar" "$cache/base.tar"
    echo "made the Debian base in $((SECONDS - start)) s" >&2
  fi
  podman import --quiet "$cache/base.tar" "$base" >/dev/null
fi

key=$( (cat Dockerfile pyproject.toml; git ls-files -s webhook) | sha256sum | cut -c1-16)
image=localhost/mlflow-webhook:$key
if ! podman image exists "$image"; then
  start=$SECONDS
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp -r Dockerfile pyproject.toml README.md webhook "$ctx/"
  find "$ctx/webhook" -name __pycache__ -prune -exec rm -rf {} +
  # The wheels of the package and of every dependency, made outside the build.
  python3 -m pip wheel -q --disable-pip-version-check --wheel-dir "$cache/wheels" . >&2
  mkdir "$ctx/wheels"
  cp "$cache/wheels"/*.whl "$ctx/wheels/"
  buildah bud --quiet --isolation chroot --layers=false \
    --build-arg "BASE=$base" --build-arg WHEELS=given -t "$image" "$ctx" >&2
  echo "built $image in $((SECONDS - start)) s" >&2
  # Earlier builds of this checkout are of no more use.
  podman images --format '{{.Repository}}:{{.Tag}}' | grep '^localhost/mlflow-webhook:' |
    grep -v ":$key\$" | xargs -r podman rmi --force >/dev/null 2>&1 || true
fi
echo "$image"
