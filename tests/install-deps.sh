#!/usr/bin/env bash
# System packages the test suite uses, installed when running as root on Debian.
# (Issue 4 adds prometheus here.)  Nothing is needed yet beyond the Python test extras.
set -euo pipefail
exit 0
