#!/usr/bin/env bash
# Install Debian packages when running as root; as another user, name them and exit 1.
#   usage: deploy/apt-install.sh "what needs them" PACKAGE...
set -euo pipefail
purpose="$1"
shift
[ $# -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing for $purpose: $* (apt-get install them as root)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
