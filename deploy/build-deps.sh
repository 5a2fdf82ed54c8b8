#!/usr/bin/env bash
# What installing hopwire needs besides Python: a C compiler and the headers of the Python that
# builds the venv, for the compiled parts (server/hopwire/**/*.c), and libnghttp2's headers for
# the HTTP/2 codec (server/hopwire/http/_h2.c).
# Installed from Debian when running as root (deploy/apt-install.sh); otherwise named, exit 1.
#   usage: deploy/build-deps.sh PYTHON
set -euo pipefail
python="${1:-python3}"
missing=()
command -v cc >/dev/null || command -v gcc >/dev/null || missing+=(gcc)
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ ! -f "$include/Python.h" ]; then
  version="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  missing+=("python${version}-dev")
fi
[ -f /usr/include/nghttp2/nghttp2.h ] || missing+=(libnghttp2-dev)
exec bash "$(dirname "$0")/apt-install.sh" "installing hopwire" "${missing[@]}"
