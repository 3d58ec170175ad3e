#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager (the built-in controllers: Deployments, Jobs...)
# and etcd from the Go module proxy, once per version, envexpand (the
# kubelet's env expansion, for the pod runner) from the same pinned k8s.io/kubernetes, and
# promrules (Prometheus's own rule loading, for the monitoring manifests), KServe's
# InferenceService controller and webhooks (kserve-manager, for the KServe tests), and Kubeflow's
# Training Operator and gofakes3 (an S3-compatible store fast enough to measure the copier
# against, for its memory test and bench/copy.py), helm (the chart's tests), Argo's workflow
# controller and the KubeRay operator (the batch engines' tests): their own main
# packages, since a module without replaces installs as it is.
# Binaries are cached outside the repository in $CONTROLPLANE_CACHE (default
# ~/.cache/primehub-mlflow-webhook/controlplane/<component>-<version>/); prints the bin dir.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${CONTROLPLANE_CACHE:-$HOME/.cache/primehub-mlflow-webhook/controlplane}
modver() { # module go.mod -> the version the wrapper requires
  awk -v m="$1" '$1 == "require" { $1 = ""; $0 = $0 } $1 == m && $2 ~ /^v/ { print $2; exit }' "$2"
}
kube_version=$(modver k8s.io/kubernetes "$here/kubernetes/go.mod")
etcd_version=$(modver go.etcd.io/etcd/server/v3 "$here/etcd/go.mod")
prometheus_version=$(modver github.com/prometheus/prometheus "$here/promrules/go.mod")
kserve_version=$(modver github.com/kserve/kserve "$here/kserve/go.mod")
training_module=github.com/kubeflow/training-operator
training_version=v1.8.1
gofakes3_version=v1.2.0
helm_version=v4.3.2  # the chart's tests (tests/test_chart.py): lint, template, install, upgrade
# Argo's workflow controller: the only line the module proxy serves here is v4 (v3 is refused);
# it makes a workflow's step pods in tests/test_batch_engines.py, as does KubeRay's operator.
argo_version=v4.0.5
kuberay_version=v1.5.0

build() { # name version dir ldflags
  local out="$cache/$1-$2"
  if [ -x "$out/$1" ]; then return; fi
  local start=$SECONDS
  echo "building $1 $2 (cold build: minutes) ..." >&2
  mkdir -p "$out.tmp"
  (cd "$3" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $4" -o "$out.tmp/$1" .)
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built $1 $2 in $((SECONDS - start)) s" >&2
}

minor=${kube_version#v1.}; minor=${minor%%.*}
kv="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=1"
kv="$kv -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
build etcd "$etcd_version" "$here/etcd" ""
build kube-apiserver "$kube_version" "$here/kubernetes/kube-apiserver" "$kv"
build kube-controller-manager "$kube_version" "$here/kubernetes/kube-controller-manager" "$kv"
build envexpand "$kube_version" "$here/envexpand" ""
build promrules "$prometheus_version" "$here/promrules" ""
build kserve-manager "$kserve_version" "$here/kserve" ""
install() { # name version package: `go install` of a main package, as its module pins it
  local out="$cache/$1-$2"
  if [ -x "$out/$(basename "$3")" ]; then return; fi
  local start=$SECONDS
  echo "building $1 $2 (cold build: minutes) ..." >&2
  mkdir -p "$out.tmp"
  GOBIN="$out.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "$3@$2"
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "built $1 $2 in $((SECONDS - start)) s" >&2
}
install training-operator "$training_version" "$training_module/cmd/training-operator.v1"
install gofakes3 "$gofakes3_version" github.com/johannesboyne/gofakes3/cmd/gofakes3
install helm "$helm_version" helm.sh/helm/v4/cmd/helm
install argo "$argo_version" github.com/argoproj/argo-workflows/v4/cmd/workflow-controller
install kuberay "$kuberay_version" github.com/ray-project/kuberay/ray-operator
mkdir -p "$cache/bin"
ln -sf "$cache/etcd-$etcd_version/etcd" "$cache/bin/etcd"
ln -sf "$cache/kube-apiserver-$kube_version/kube-apiserver" "$cache/bin/kube-apiserver"
ln -sf "$cache/kube-controller-manager-$kube_version/kube-controller-manager" "$cache/bin/kube-controller-manager"
ln -sf "$cache/envexpand-$kube_version/envexpand" "$cache/bin/envexpand"
ln -sf "$cache/promrules-$prometheus_version/promrules" "$cache/bin/promrules"
ln -sf "$cache/kserve-manager-$kserve_version/kserve-manager" "$cache/bin/kserve-manager"
ln -sf "$cache/training-operator-$training_version/training-operator.v1" "$cache/bin/training-operator"
ln -sf "$cache/gofakes3-$gofakes3_version/gofakes3" "$cache/bin/gofakes3"
ln -sf "$cache/helm-$helm_version/helm" "$cache/bin/helm"
ln -sf "$cache/argo-$argo_version/workflow-controller" "$cache/bin/workflow-controller"
ln -sf "$cache/kuberay-$kuberay_version/ray-operator" "$cache/bin/ray-operator"
echo "$cache/bin"
