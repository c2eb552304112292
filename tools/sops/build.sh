#!/usr/bin/env bash
# Build the real `sops` binary used by the SOPS interop tests from the Go module proxy into
# a cache outside the repository. Idempotent: a complete cache entry is reused as it is.
#
#   tools/sops/build.sh                   build if missing, print the binary's path
#   KUSTOS_CACHE_DIR=/x tools/sops/build.sh
#   SOPS_VERSION=v3.11.0 tools/sops/build.sh   (another version, same cache folder)
#
# sops's go.mod has no replace lines, so a plain `go install module@version` builds it.
# A few minutes on 2 cores the first time; run it under `nice -n 10` on a shared machine.
set -euo pipefail

version="${SOPS_VERSION:-v3.13.2}"

die() { echo "sops build: $*" >&2; exit 1; }
say() { echo "sops build: $*" >&2; }

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.24 on PATH)"

cache_root="${KUSTOS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kustos}"
dest="${cache_root}/sops"
bin="${dest}/bin/sops"
stamp="${dest}/.complete-${version}"

complete() {
  [[ -f "${stamp}" && -x "${bin}" ]] || return 1
  "${bin}" --version --disable-version-check 2>/dev/null | grep -q "sops ${version#v}"
}

if complete; then
  say "cached: ${bin}"
  echo "${bin}"
  exit 0
fi

mkdir -p "${dest}/bin"
rm -f "${dest}"/.complete-*
export CGO_ENABLED=0 GOTOOLCHAIN=local GOBIN="${dest}/bin" GOFLAGS="-trimpath"
module="github.com/getsops/sops/v3"
say "sops ${version}: resolving modules"
probe="$(mktemp)"
trap 'rm -f "${probe}"' EXIT
go mod download -json "${module}@${version}" >"${probe}" 2>&1 \
  || die "cannot download ${module}@${version} from the Go module proxy ($(grep -m1 -o '"Error": "[^"]*' "${probe}" | cut -c11- | cut -c1-200))"
say "sops ${version}: compiling"
go install -ldflags "-s -w" "${module}/cmd/sops@${version}" >&2
"${bin}" --version --disable-version-check 2>/dev/null | grep -q "sops ${version#v}" \
  || die "built ${bin}, but it does not report version ${version}"
touch "${stamp}"
say "built: ${bin}"
echo "${bin}"
