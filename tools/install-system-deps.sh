#!/usr/bin/env bash
# Install the Debian packages Kustos's tests and demo need, only those missing.
#   softhsm2     a real PKCS#11 token for the KMS plugin
#   postgresql   a real database for database-credential rotation
#   age          the reference age binary, to prove backups open with standard tools
#   procps       pgrep/ps for orphan checks in tests
#   rsyslog, rsyslog-openssl  a real syslog receiver (TCP and TLS) for audit forwarding tests
set -euo pipefail
packages=(softhsm2 postgresql age procps rsyslog rsyslog-openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system packages: all present (${packages[*]})"
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "system packages missing (${missing[*]}) and not root: install them with apt-get" >&2
    exit 1
  fi
else
  SUDO=""
fi
echo "system packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
${SUDO} apt-get update -qq || { echo "apt-get update failed" >&2; exit 1; }
${SUDO} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
  || { echo "apt-get install ${missing[*]} failed" >&2; exit 1; }
echo "system packages: installed ${missing[*]}"
