#!/usr/bin/env bash
# Installs, on Debian, what podpath needs beside Go: clang/llvm/libbpf for `make
# generate`, and the tools the scenarios use as witnesses. Runs as root; installs only
# what is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(clang llvm libbpf-dev iproute2 nftables iputils-ping iputils-tracepath iperf3 tshark chromium make git)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  apt-get update -qq
  # tshark asks whether non-root users may capture; the preseed answers "no".
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
