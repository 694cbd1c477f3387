#!/usr/bin/env bash
# need.sh PACKAGE COMMAND...: installs Debian's PACKAGE when one of the COMMANDs is missing
# (as root, or through sudo), so every make target brings what it needs.
set -euo pipefail
package=$1
shift
for command in "$@"; do
  command -v "$command" >/dev/null && continue
  echo "installing $package ($*)"
  run() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  { run apt-get update -qq && DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq "$package" >/dev/null; } ||
    { echo "$package is required: install Debian's $package package"; exit 1; }
  exit 0
done
