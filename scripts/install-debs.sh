#!/usr/bin/env bash
# Install the Debian packages the tests and tasks use (data sets, chromium), when apt is available.
set -u
list=${1:-debian-packages.txt}
pkgs=$(grep -v '^#' "$list" | tr '\n' ' ')
missing=()
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get is not available; skipping Debian packages: ${missing[*]}."
  echo "      Tests that need them are skipped with the command to install them."
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo; command -v sudo >/dev/null 2>&1 || { echo "note: not root and no sudo; skipping Debian packages: ${missing[*]}"; exit 0; }
else
  SUDO=
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${missing[@]}" >/dev/null \
  || echo "note: apt-get could not install ${missing[*]}; tests that need them will be skipped"
