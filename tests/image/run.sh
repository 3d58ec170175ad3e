#!/usr/bin/env bash
# Runs a command of the image as its user would run it in a pod with readOnlyRootFilesystem and
# an emptyDir at /tmp (podman run cannot run here): in a private mount namespace, the image's
# root filesystem bind-mounted read-only, TMP (a host folder) at /tmp, /dev and /proc, then
# chroot as uid:gid 10001 with the image's PATH. The network is the host's (loopback).
# SERVICE_ACCOUNT_DIR (a host folder with `token` and `namespace`) is put where a pod has its
# ServiceAccount's, /var/run/secrets/kubernetes.io/serviceaccount.
#   tests/image/run.sh ROOTFS TMP command args...
set -euo pipefail
exec unshare --mount --fork -- bash -c '
  set -euo pipefail
  root=$1 tmp=$2; shift 2
  mount --make-rprivate /
  mount --bind "$root" "$root"
  mount -o remount,bind,ro "$root"
  mount --bind "$tmp" "$root/tmp"
  mount --rbind /dev "$root/dev"
  mount -t proc proc "$root/proc"
  if [ -n "${SERVICE_ACCOUNT_DIR:-}" ]; then
    mount -t tmpfs tmpfs "$root/run"
    mkdir -p "$root/run/secrets/kubernetes.io/serviceaccount"
    mount --bind "$SERVICE_ACCOUNT_DIR" "$root/run/secrets/kubernetes.io/serviceaccount"
  fi
  exec env -i PATH=/opt/venv/bin:/usr/bin:/bin HOME=/tmp PYTHONDONTWRITEBYTECODE=1 \
    ${PASS_ENV:-} /usr/sbin/chroot --userspec=10001:10001 "$root" "$@"
' _ "$@"
