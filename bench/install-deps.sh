#!/usr/bin/env bash
# wrk drives the load; nginx is the backend and a comparison proxy, HAProxy the other; valgrind counts
# instructions (bench/instructions.py). Debian packages, as root.
set -euo pipefail
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v valgrind >/dev/null || missing+=(valgrind)  # bench/instructions.py
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)  # bench/run.py
command -v slowhttptest >/dev/null || missing+=(slowhttptest)  # bench/slowclients.py
command -v h2load >/dev/null || missing+=(nghttp2-client)  # bench/h2.py
exec bash "$(dirname "$0")/../deploy/apt-install.sh" "the bench" "${missing[@]}"
