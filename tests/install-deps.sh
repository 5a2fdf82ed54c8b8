#!/usr/bin/env bash
# System packages the test suite uses, installed from Debian when running as root.
#   openssl: the TLS tests make a CA and certificates with the openssl command.
#   prometheus: a real Prometheus server scrapes hopwire; promtool checks the exposition.
set -euo pipefail
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v prometheus >/dev/null || missing+=(prometheus)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "the tests need: ${missing[*]} (apt-get install them as root)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
