#!/usr/bin/env bash
# The CRDs of the projects our overlays use, as those projects ship them inside their Go modules
# (fetched from the Go module proxy, like the control plane): cert-manager's, the Prometheus
# operator's, KServe's, Kubeflow's Training Operator's, Argo Workflows' and KubeRay's. Cached in $CRDS_CACHE (default ~/.cache/primehub-mlflow-webhook/crds/);
# prints the folder, which holds one file per CRD, and in other/ KServe's other objects.
set -euo pipefail
cache=${CRDS_CACHE:-$HOME/.cache/primehub-mlflow-webhook/crds}
modules=(
  "github.com/cert-manager/cert-manager@v1.19.2 deploy/crds cert-manager.io_issuers.yaml cert-manager.io_certificates.yaml"
  "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml"
  "github.com/kserve/kserve@v0.20.0 config/crd/full serving.kserve.io_inferenceservices.yaml serving.kserve.io_clusterservingruntimes.yaml serving.kserve.io_servingruntimes.yaml"
  "github.com/kserve/kserve@v0.20.0 config/crd/full/clusterstoragecontainer serving.kserve.io_clusterstoragecontainers.yaml"
  "github.com/kubeflow/training-operator@v1.8.1 manifests/base/crds kubeflow.org_pytorchjobs.yaml"
  "github.com/argoproj/argo-workflows/v4@v4.0.5 manifests/base/crds/minimal argoproj.io_workflows.yaml argoproj.io_workflowtemplates.yaml argoproj.io_clusterworkflowtemplates.yaml argoproj.io_cronworkflows.yaml argoproj.io_workflowtaskresults.yaml argoproj.io_workflowtasksets.yaml argoproj.io_workflowartifactgctasks.yaml argoproj.io_workfloweventbindings.yaml"
  "github.com/ray-project/kuberay/ray-operator@v1.5.0 config/crd/bases ray.io_rayclusters.yaml ray.io_rayjobs.yaml ray.io_rayservices.yaml"
)
# And what KServe's manager needs besides its CRDs (tests/kserve.py), from the same module:
# its ConfigMap, the MLServer runtime (modelFormat mlflow), its webhook configurations.
others=(
  "github.com/kserve/kserve@v0.20.0 config/configmap/inferenceservice.yaml kserve-inferenceservice-config.yaml"
  "github.com/kserve/kserve@v0.20.0 config/runtimes/kserve-mlserver.yaml kserve-mlserver.yaml"
  "github.com/kserve/kserve@v0.20.0 config/webhook/manifests.yaml kserve-webhooks.yaml"
)
out="$cache/$(printf '%s\n' "${modules[@]}" "${others[@]}" | sha256sum | cut -c1-12)"
if [ ! -d "$out" ]; then
  tmp=$(mktemp -d)
  for entry in "${modules[@]}"; do
    read -r module folder files <<<"$entry"
    dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { echo "cannot download $module" >&2; exit 1; }
    for f in $files; do cp "$dir/$folder/$f" "$tmp/"; done
  done
  mkdir "$tmp/other"
  for entry in "${others[@]}"; do
    read -r module file name <<<"$entry"
    dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "$module" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    cp "$dir/$file" "$tmp/other/$name"
  done
  mkdir -p "$cache" && rm -rf "$out.tmp" && mkdir "$out.tmp" && mv "$tmp"/*.yaml "$tmp/other" "$out.tmp/"
  chmod -R u+w "$out.tmp" && mv "$out.tmp" "$out"
  rm -rf "$tmp"
fi
echo "$out"
