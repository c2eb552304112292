#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) from the Go module proxy into a cache outside
# the repository. Idempotent: a complete cache entry is reused as it is.
#
#   tools/controlplane/build.sh            build if missing, print the bin dir
#   KUSTOS_CACHE_DIR=/x tools/controlplane/build.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=/dev/null
source "${here}/../../src/kustos/testing/data/controlplane-versions.env"

die() { echo "controlplane build: $*" >&2; exit 1; }
say() { echo "controlplane build: $*" >&2; }

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.26 on PATH)"

cache_root="${KUSTOS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kustos}"
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
dest="${cache_root}/controlplane/${key}"
bin="${dest}/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

complete() {
  [[ -f "${dest}/.complete" ]] || return 1
  for b in "${binaries[@]}"; do [[ -x "${bin}/${b}" ]] || return 1; done
}

if complete; then
  say "cached in ${bin}"
  echo "${bin}"
  exit 0
fi

mkdir -p "${bin}" "${dest}/src"
export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod" GOTOOLCHAIN=local
work="${dest}/src"

check_proxy() {
  go mod download -json "$1" >"${work}/probe.json" 2>&1 \
    || die "cannot download $1 from the Go module proxy ($(grep -m1 -o '"Error": "[^"]*' "${work}/probe.json" | cut -c11- | cut -c1-200))"
}

# --- etcd: its own module, so its versions do not lift the apiserver's. ---
build_etcd() {
  [[ -x "${bin}/etcd" ]] && return 0
  say "etcd ${ETCD_VERSION}: resolving modules"
  check_proxy "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  local m="${work}/etcd"
  mkdir -p "${m}"
  # The committed wrapper module pins every dependency (go.sum); `go get` only runs when
  # the pinned version changed and the wrapper must be regenerated.
  cp "${here}/etcd/go.mod" "${m}/go.mod"
  [[ -f "${here}/etcd/go.sum" ]] && cp "${here}/etcd/go.sum" "${m}/go.sum"
  if ! grep -q "go.etcd.io/etcd/server/v3 ${ETCD_VERSION}" "${m}/go.mod"; then
    (cd "${m}" && go get -tool "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2)
  fi
  say "etcd: compiling"
  (cd "${m}" && go build -ldflags "-s -w" -o "${bin}/etcd" go.etcd.io/etcd/server/v3 >&2)
}

# --- Kubernetes: staging modules need replace lines (reference: kms-and-control-plane.md §5). ---
build_kube() {
  local need=0
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "${bin}/${b}" ]] || need=1
  done
  [[ ${need} == 1 ]] || return 0
  say "kubernetes ${KUBERNETES_VERSION}: resolving modules"
  check_proxy "k8s.io/kubernetes@${KUBERNETES_VERSION}"
  local gomod staging m="${work}/kube"
  gomod="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/${KUBERNETES_VERSION}.mod"
  staging="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "${m}"
  if grep -q "k8s.io/kubernetes ${KUBERNETES_VERSION}" "${here}/kube/go.mod" 2>/dev/null; then
    cp "${here}/kube/go.mod" "${here}/kube/go.sum" "${m}/"
  else
  {
    echo "module kustos.invalid/controlplane/kube"
    echo
    echo "go 1.26"
    echo
    echo "replace ("
    grep -E '^\s*k8s\.io/[a-z0-9-]+ v0\.0\.0$' "${gomod}" | awk -v v="${staging}" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"${m}/go.mod"
  [[ -f "${here}/kube/go.sum" ]] && cp "${here}/kube/go.sum" "${m}/go.sum"
  (cd "${m}" && go get -tool \
    "k8s.io/kubernetes/cmd/kube-apiserver@${KUBERNETES_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-controller-manager@${KUBERNETES_VERSION}" \
    "k8s.io/kubernetes/cmd/kube-scheduler@${KUBERNETES_VERSION}" \
    "k8s.io/kubernetes/cmd/kubectl@${KUBERNETES_VERSION}" >&2)
  fi
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X ${p}.gitVersion=${KUBERNETES_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=1970-01-01T00:00:00Z"
  done
  for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "${bin}/${b}" ]] && continue
    say "${b}: compiling (several minutes on 2 cores)"
    (cd "${m}" && go build -ldflags "${ld}" -o "${bin}/${b}" "k8s.io/kubernetes/cmd/${b}" >&2)
  done
}

build_kwok() {
  [[ -x "${bin}/kwok" ]] && return 0
  say "kwok ${KWOK_VERSION}: compiling"
  check_proxy "sigs.k8s.io/kwok@${KWOK_VERSION}"
  GOBIN="${bin}" go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" >&2
}

build_etcd
build_kwok
build_kube

complete_ok=1
for b in "${binaries[@]}"; do [[ -x "${bin}/${b}" ]] || complete_ok=0; done
[[ ${complete_ok} == 1 ]] || die "build finished but binaries are missing in ${bin}"
date -u +%FT%TZ >"${dest}/.complete"
say "done: ${bin}"
echo "${bin}"
