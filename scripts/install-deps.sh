#!/usr/bin/env bash
# Installs, on Debian, what podpath needs beside Go: clang/llvm/libbpf for `make
# generate`, and the tools the scenarios use as witnesses. Runs as root; installs only
# what is missing. bird2: BIRD, the routing daemon of BGP routers in topologies; frr:
# FRR (zebra, bgpd, vtysh), the alternative daemon (bgp.daemon: frr).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(clang llvm libbpf-dev iproute2 nftables iputils-ping iputils-tracepath iperf3 tshark chromium make git bird2 frr etcd-server etcd-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if ((EUID != 0)); then
    echo "install-deps: missing Debian packages: ${missing[*]}; run as root (make test and make demo need root anyway)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  # tshark asks whether non-root users may capture; the preseed answers "no".
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Go itself comes from the machine (/usr/local/go on these machines): Debian's golang is
# older than go.mod asks for, so a missing Go is an error that says what to install.
if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
  echo "install-deps: no Go toolchain: install Go $(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod") or newer at /usr/local/go" >&2
  exit 1
fi
