#!/usr/bin/env bash
# Installs, on Debian, what podpath needs: Go (from go.dev, when missing), clang/llvm/libbpf for `make
# generate`, and the tools the scenarios use as witnesses. Runs as root; installs only
# what is missing. bird2: BIRD, the routing daemon of BGP routers in topologies; frr:
# FRR (zebra, bgpd, vtysh), the alternative daemon (bgp.daemon: frr).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(curl ca-certificates clang llvm libbpf-dev iproute2 nftables iputils-ping iputils-tracepath iperf3 tshark chromium make git bird2 frr etcd-server etcd-client)
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

# Go: Debian's golang is older than go.mod asks for, so a missing Go is installed from
# the Go project's own release (go.dev/dl) at /usr/local/go, the version go.mod names,
# its tarball checked against the SHA-256 the release list publishes.
if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
  want=$(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod")
  case $(dpkg --print-architecture) in
    amd64) arch=amd64 ;;
    arm64) arch=arm64 ;;
    *) echo "install-deps: no Go toolchain, and no Go release for $(dpkg --print-architecture): install Go $want at /usr/local/go" >&2; exit 1 ;;
  esac
  if ((EUID != 0)); then
    echo "install-deps: no Go toolchain: run as root to install Go $want at /usr/local/go" >&2
    exit 1
  fi
  file=go$want.linux-$arch.tar.gz
  # The release list is JSON with one object per file; its "sha256" follows "filename".
  sum=$(curl -fsSL 'https://go.dev/dl/?mode=json&include=all' | tr '{},' '\n\n\n' |
    awk -v f="\"$file\"" '$0 ~ "\"filename\": *" f { on = 1 } on && /"sha256"/ { gsub(/"sha256"|[": ]/, ""); print; exit }')
  if [[ -z $sum ]]; then
    echo "install-deps: go.dev lists no $file: install Go $want at /usr/local/go" >&2
    exit 1
  fi
  echo "install-deps: installing Go $want at /usr/local/go"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  curl -fsSL -o "$tmp/$file" "https://go.dev/dl/$file"
  echo "$sum  $tmp/$file" | sha256sum -c --quiet -
  tar -C /usr/local -xzf "$tmp/$file"
fi
