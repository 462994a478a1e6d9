#!/usr/bin/env bash
# Builds the pinned control-plane binaries and helm from Go modules into a cache
# outside the repo, keyed by version (the layout setup-envtest uses). No binary
# downloads: only the Go module proxy is reachable on our machines.
#
#   K8S_VERSION=1.36.3 ETCD_VERSION=3.6.16 HELM_VERSION=4.2.4 TOOLS_DIR=~/.cache/herd/tools hack/build-tools.sh
#
# Result:
#   $TOOLS_DIR/k8s/$K8S_VERSION-linux-amd64/{etcd,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl}
#   $TOOLS_DIR/helm/$HELM_VERSION-linux-amd64/helm
#   $TOOLS_DIR/kwok/$KWOK_VERSION-linux-amd64/{kwok,stages.yaml}   (pods without a kubelet)
# Each binary is skipped when it exists and reports the pinned version.
set -euo pipefail

: "${K8S_VERSION:?}" "${ETCD_VERSION:?}" "${HELM_VERSION:?}" "${KWOK_VERSION:?}" "${TOOLS_DIR:?}"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
platform="$(go env GOOS)-$(go env GOARCH)"
k8s_dir="$TOOLS_DIR/k8s/$K8S_VERSION-$platform"
helm_dir="$TOOLS_DIR/helm/$HELM_VERSION-$platform"
kwok_dir="$TOOLS_DIR/kwok/$KWOK_VERSION-$platform"
work="$TOOLS_DIR/.build"
mkdir -p "$k8s_dir" "$helm_dir" "$kwok_dir" "$work"

log() { printf '\033[1m[tools]\033[0m %s\n' "$*" >&2; }

# has BIN EXPECTED CMD...: true when BIN exists and CMD's output mentions EXPECTED.
has() {
  local bin=$1 want=$2; shift 2
  [[ -x $bin ]] && "$@" 2>/dev/null | grep -q -- "$want"
}

minor=${K8S_VERSION#*.}; minor=${minor%%.*}
staging_version="v0.${K8S_VERSION#*.}"

build_kubernetes() {
  if has "$k8s_dir/kube-apiserver" "v$K8S_VERSION" "$k8s_dir/kube-apiserver" --version &&
     has "$k8s_dir/kube-controller-manager" "v$K8S_VERSION" "$k8s_dir/kube-controller-manager" --version &&
     has "$k8s_dir/kube-scheduler" "v$K8S_VERSION" "$k8s_dir/kube-scheduler" --version &&
     has "$k8s_dir/kubectl" "v$K8S_VERSION" "$k8s_dir/kubectl" version --client; then
    log "kubernetes v$K8S_VERSION: cached in $k8s_dir"; return
  fi
  log "kubernetes v$K8S_VERSION: building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (several minutes on a cold cache)"
  local mod="$work/kubernetes-$K8S_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"
  # k8s.io/kubernetes requires its staging modules at v0.0.0 through replace
  # directives that only apply inside its own repo; pin each to its tag instead.
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module herd.local/tools/kubernetes"
    echo
    grep -E '^go [0-9]' "$gomod"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && go get "k8s.io/kubernetes@v$K8S_VERSION")
  # Without the stamp /version says v0.0.0-master and helm kubeVersion checks fail.
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && go build -trimpath -ldflags "$ld" -o "$k8s_dir/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  if has "$k8s_dir/etcd" "etcd Version: $ETCD_VERSION" "$k8s_dir/etcd" --version; then
    log "etcd v$ETCD_VERSION: cached"; return
  fi
  log "etcd v$ETCD_VERSION: building"
  local mod="$work/etcd-$ETCD_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"
  (cd "$mod" && go mod init herd.local/tools/etcd >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" &&
    go build -trimpath -ldflags "-s -w" -o "$k8s_dir/etcd" go.etcd.io/etcd/server/v3)
}

build_helm() {
  if has "$helm_dir/helm" "v$HELM_VERSION" "$helm_dir/helm" version --short; then
    log "helm v$HELM_VERSION: cached"; return
  fi
  log "helm v$HELM_VERSION: building"
  local mod="$work/helm-$HELM_VERSION"
  rm -rf "$mod"; mkdir -p "$mod"
  (cd "$mod" && go mod init herd.local/tools/helm >/dev/null 2>&1 &&
    go get "helm.sh/helm/v4@v$HELM_VERSION" &&
    go build -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" \
      -o "$helm_dir/helm" helm.sh/helm/v4/cmd/helm)
}

# kwok plays the kubelet for fake nodes (pods scheduled, Ready, Jobs complete; no
# containers). Standalone kwok needs Stage objects: the fast node and pod stages ship in
# its module under kustomize/stage/, concatenated into one --config file here.
build_kwok() {
  if has "$kwok_dir/kwok" "$KWOK_VERSION" "$kwok_dir/kwok" --version && [[ -s $kwok_dir/stages.yaml ]]; then
    log "kwok v$KWOK_VERSION: cached"; return
  fi
  log "kwok v$KWOK_VERSION: building"
  GOBIN="$kwok_dir" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
  local src
  src=$(cd "$work" && go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  local out="$kwok_dir/stages.yaml.tmp"
  : >"$out"
  # What kustomize/stage/fast bundles: nodes Ready at once, leases renewed, pods Ready at once.
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [[ -f $src/kustomize/stage/$f ]] || { log "kwok: no stage $f in $src"; exit 1; }
    { echo "---"; cat "$src/kustomize/stage/$f"; } >>"$out"
  done
  mv "$out" "$kwok_dir/stages.yaml"
}

build_helm
if [[ ${BUILD_K8S:-true} == true ]]; then
  build_etcd
  build_kubernetes
else
  log "KUBEBUILDER_ASSETS is set: using the control-plane binaries there"
fi
build_kwok
log "ready: KUBEBUILDER_ASSETS=$k8s_dir HELM=$helm_dir/helm KWOK=$kwok_dir"
