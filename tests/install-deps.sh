#!/usr/bin/env bash
# System packages the test suite uses, installed from Debian when running as root.
#   openssl: the TLS tests make a CA and certificates with the openssl command.
#   prometheus: a real Prometheus server scrapes hopwire; promtool checks the exposition.
#   redis-server: rateLimit.redis is tested against a real Redis shared by two instances.
#   systemd: systemd-analyze verifies the units, systemd-socket-activate starts hopwire.
#   kubernetes-client: kubectl kustomize renders the Kubernetes base and overlays.
#   nghttp2-client, curl: real HTTP/2 clients (h2load, nghttp, curl --http2) against hopwire.
set -euo pipefail
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v systemd-socket-activate >/dev/null || missing+=(systemd)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nghttp >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
exec bash "$(dirname "$0")/../deploy/apt-install.sh" "the tests" "${missing[@]}"
