#!/usr/bin/env bash
# Installs the system packages moerec needs (OpenBLAS, SQLite and zlib headers, WordNet;
# NumPy for the tests' reference forward pass) when any is missing. Safe to run repeatedly; does nothing when all are present.
set -euo pipefail
packages=(libopenblas-dev libsqlite3-dev zlib1g-dev wordnet-base python3-numpy)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif command -v sudo >/dev/null 2>&1; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "error: missing packages ${missing[*]}; install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi
