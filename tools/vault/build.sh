#!/usr/bin/env bash
# Build the `vault` server used by the integration tests from the Go module proxy into a
# cache outside the repository. Idempotent: a complete cache entry is reused as it is.
#
#   tools/vault/build.sh                  build if missing, print the binary's path
#   KUSTOS_CACHE_DIR=/x tools/vault/build.sh
#
# Vault's root go.mod replaces its own api/sdk modules with in-repo folders and swaps two
# third-party modules; replace lines only apply in the main module, so
# `go install github.com/hashicorp/vault@vX` is refused. The committed wrapper module
# (go.mod + go.sum beside this script) requires vault with the api and sdk versions that
# compile with it and copies the two third-party replaces. v1.21.0 is pinned: for later
# 1.21.x no published sdk version fits (docs/sources-vault.md).
#
# The first time: ~6 GB of modules, then 9 minutes (idle) to 30 minutes (shared) of
# compiling on 2 cores. Run it under `nice -n 10` on a shared machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() { echo "vault build: $*" >&2; exit 1; }
say() { echo "vault build: $*" >&2; }

command -v go >/dev/null 2>&1 || die "Go is not installed (need Go >= 1.25.1 on PATH)"

# The one place the version is written: the wrapper module's require line.
version="$(awk '$1 == "github.com/hashicorp/vault" && $2 ~ /^v/ {print $2; exit}' "${here}/go.mod")"
api_version="$(awk '$1 == "github.com/hashicorp/vault/api" {print $2; exit}' "${here}/go.mod")"
sdk_version="$(awk '$1 == "github.com/hashicorp/vault/sdk" {print $2; exit}' "${here}/go.mod")"
[[ -n "${version}" && -n "${api_version}" && -n "${sdk_version}" ]] \
  || die "cannot read the vault, api and sdk versions from ${here}/go.mod"

cache_root="${KUSTOS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kustos}"
dest="${cache_root}/vault/${version}"
bin="${dest}/bin/vault"

complete() { [[ -f "${dest}/.complete" && -x "${bin}" ]]; }

if complete; then
  say "cached: ${bin}"
  echo "${bin}"
  exit 0
fi

mkdir -p "${dest}/bin" "${dest}/src"
# One build at a time per version; a second caller waits and then finds the cache.
exec 9>"${dest}/.lock"
flock 9
if complete; then
  say "cached: ${bin}"
  echo "${bin}"
  exit 0
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-trimpath -buildvcs=false"
work="${dest}/src"
cp "${here}/go.mod" "${work}/go.mod"
if [[ -f "${here}/go.sum" ]]; then
  cp "${here}/go.sum" "${work}/go.sum"
else
  # First build of a new pin: resolve the graph and write go.mod/go.sum back beside this
  # script, to be committed; later builds use them read-only.
  say "vault ${version} (api ${api_version}, sdk ${sdk_version}): resolving modules"
  rm -f "${work}/go.sum"
  (cd "${work}" && go mod download -json "github.com/hashicorp/vault@${version}" >"${work}/probe.json" 2>&1) \
    || die "cannot download github.com/hashicorp/vault@${version} from the Go module proxy ($(grep -m1 -o '"Error": "[^"]*' "${work}/probe.json" | cut -c11- | cut -c1-200))"
  (cd "${work}" && go mod tidy >&2) || die "go mod tidy failed for the wrapper module"
  cp "${work}/go.mod" "${here}/go.mod"
  cp "${work}/go.sum" "${here}/go.sum"
  say "wrote ${here}/go.mod and go.sum: commit them"
fi

# The version comes from Vault's embedded VERSION file; a module build carries no release
# ldflags, so stamp the build date from the module's publication time (reproducible).
published="$(cd "${work}" && go list -mod=readonly -m -json github.com/hashicorp/vault \
  | sed -n 's/^[[:space:]]*"Time": "\(.*\)",*$/\1/p')"
ld="-s -w -X github.com/hashicorp/vault/version.BuildDate=${published:-1970-01-01T00:00:00Z}"

say "vault ${version}: compiling (9 to 30 minutes on 2 cores, depending on load)"
start=$(date +%s)
(cd "${work}" && go build -mod=readonly -ldflags "${ld}" -o "${bin}.partial" github.com/hashicorp/vault >&2) \
  || die "go build github.com/hashicorp/vault@${version} failed (see the output above)"
mv "${bin}.partial" "${bin}"
"${bin}" version >&2 || die "the built binary does not run: ${bin}"
date -u +%FT%TZ >"${dest}/.complete"
say "done in $(( $(date +%s) - start )) s: ${bin}"
echo "${bin}"
