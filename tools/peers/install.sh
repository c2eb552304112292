#!/usr/bin/env bash
# Install the peers that bench/ compares Kustos with, outside the repo; safe to run again.
#
#   Checkov  (PyPI checkov)                        -> $PEERS/checkov-venv (its own venv)
#   Trivy    (Go module github.com/aquasecurity/trivy) -> $PEERS/bin/trivy
#   reload-loop (tools/peers/reloadloop, client-go)  -> $PEERS/bin/reload-loop
#
# The Go scanner is Trivy because the two preferred ones cannot be had here: the Go module
# proxy answers 403 "not available" for golang.stackrox.io/kube-linter (and
# github.com/stackrox/kube-linter) and for github.com/fairwindsops/polaris (v8, v9 too),
# for the version list and for exact versions alike (checked 2026-11-29).
# Trivy needs GOEXPERIMENT=jsonv2 to build with Go 1.26 (its own magefile sets the same).
#
# PEERS defaults to ~/.cache/kustos/peers; set KUSTOS_PEERS_DIR to move it.
set -euo pipefail

CHECKOV_VERSION=3.3.30
TRIVY_MODULE=github.com/aquasecurity/trivy
TRIVY_VERSION=v0.74.0

PEERS="${KUSTOS_PEERS_DIR:-$HOME/.cache/kustos/peers}"
LOGS="$PEERS/logs"
mkdir -p "$PEERS/bin" "$LOGS"

fail() { echo "tools/peers/install.sh: $*" >&2; exit 1; }
step() { echo "==> $*"; }

# --------------------------------------------------------------------------- Checkov
checkov="$PEERS/checkov-venv/bin/checkov"
if [[ -x "$checkov" ]] && [[ "$("$checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]]; then
  step "checkov $CHECKOV_VERSION already installed ($checkov)"
else
  python=""
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null; then python="$candidate"; break; fi
  done
  [[ -n "$python" ]] || fail "no python3 found to make the Checkov virtualenv"
  step "installing checkov $CHECKOV_VERSION into $PEERS/checkov-venv with $python (log: $LOGS/checkov-install.log)"
  rm -rf "$PEERS/checkov-venv"
  "$python" -m venv "$PEERS/checkov-venv" >"$LOGS/checkov-install.log" 2>&1 \
    || fail "could not create $PEERS/checkov-venv (see $LOGS/checkov-install.log)"
  "$PEERS/checkov-venv/bin/pip" install --quiet --upgrade pip >>"$LOGS/checkov-install.log" 2>&1 \
    || fail "pip upgrade in the Checkov venv failed (see $LOGS/checkov-install.log)"
  "$PEERS/checkov-venv/bin/pip" install --quiet "checkov==$CHECKOV_VERSION" >>"$LOGS/checkov-install.log" 2>&1 \
    || fail "pip install checkov==$CHECKOV_VERSION failed (see $LOGS/checkov-install.log)"
  [[ "$("$checkov" --version 2>/dev/null)" == "$CHECKOV_VERSION" ]] \
    || fail "checkov installed but does not report version $CHECKOV_VERSION"
  step "checkov $("$checkov" --version) installed"
fi

# --------------------------------------------------------------------------- Trivy
trivy="$PEERS/bin/trivy"
if [[ -x "$trivy" ]] && "$trivy" --version 2>/dev/null | grep -Eq "^Version: v?${TRIVY_VERSION#v}$"; then
  step "trivy $TRIVY_VERSION already built ($trivy)"
else
  command -v go >/dev/null || fail "go is not installed; trivy $TRIVY_VERSION needs Go 1.26"
  step "building trivy $TRIVY_VERSION with $(go env GOVERSION) into $PEERS/bin; about 10 minutes on 2 cores (log: $LOGS/trivy-build.log)"
  GOEXPERIMENT=jsonv2 GOBIN="$PEERS/bin" GOFLAGS=-buildvcs=false \
    go install -trimpath \
    -ldflags "-s -w -X $TRIVY_MODULE/pkg/version/app.ver=${TRIVY_VERSION#v}" \
    "$TRIVY_MODULE/cmd/trivy@$TRIVY_VERSION" >"$LOGS/trivy-build.log" 2>&1 \
    || fail "go install $TRIVY_MODULE/cmd/trivy@$TRIVY_VERSION failed (see $LOGS/trivy-build.log)"
  step "$("$trivy" --version | head -n 1) built"
fi

# --------------------------------------------------------------------------- reload loop
# Reloader itself is refused by the Go module proxy (bench/README.md); the baseline is a
# client-go informer loop of ours that restarts the way Reloader does (tools/peers/reloadloop).
reload_loop="$PEERS/bin/reload-loop"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -x "$reload_loop" ]] && [[ "$reload_loop" -nt "$here/reloadloop/main.go" ]]; then
  step "reload-loop already built ($reload_loop)"
else
  command -v go >/dev/null || fail "go is not installed; reload-loop needs Go 1.26"
  step "building reload-loop (client-go) into $PEERS/bin (log: $LOGS/reload-loop-build.log)"
  (cd "$here/reloadloop" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go build -trimpath -ldflags "-s -w" -o "$reload_loop" .) >"$LOGS/reload-loop-build.log" 2>&1 \
    || fail "go build of tools/peers/reloadloop failed (see $LOGS/reload-loop-build.log)"
fi

step "peers ready in $PEERS"
