#!/usr/bin/env bash
# Runs BenchmarkKatranSideBySide (datapath/progtest/katran_bench_test.go): Katran's XDP
# balancer and podpath's XDP NodePort program on the same packets, interleaved round by
# round, BPF_PROG_TEST_RUN with repeat=1; the table and the ratios podpath/Katran on
# stdout. docs/katran-side-by-side.md says what is measured.
#
# Usage (as root): scripts/katran-bench.sh KATRAN [ROUNDS] [PACKETS]
#   KATRAN   Katran's balancer object (balancer.bpf.o), or a Katran checkout in which
#            Katran's own BPF build has run (its object is then looked for where that
#            build leaves it). podpath does not build or ship Katran.
#   ROUNDS   interleaved rounds (default 21); PACKETS per path per round (default 10000)
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin
katran=${1:?usage: $0 KATRAN_OBJECT_OR_CHECKOUT [ROUNDS] [PACKETS]}
rounds=${2:-21}
pkts=${3:-10000}

obj=$katran
if [[ -d $katran ]]; then
  obj=""
  for c in "$katran"/{_build/,}deps/bpfprog/bpf/balancer.bpf.o "$katran/balancer.bpf.o"; do
    if [[ -f $c ]]; then obj=$c; break; fi
  done
  if [[ -z $obj ]]; then
    echo "katran-bench: no balancer.bpf.o under $katran: run Katran's own BPF build there first (see its README)" >&2
    exit 1
  fi
fi
if [[ ! -f $obj ]]; then
  echo "katran-bench: $obj: no such file" >&2
  exit 1
fi
if ((EUID != 0)); then
  echo "katran-bench: BPF_PROG_TEST_RUN and the network namespaces need root" >&2
  exit 1
fi

cd "$(dirname "$0")/.."
echo "katran-bench: $obj, $rounds rounds x $pkts packets per path"
# -benchtime 1x: the benchmark is one fixed workload (rounds x packets), not b.N.
PODPATH_KATRAN_OBJ=$(realpath "$obj") PODPATH_KATRAN_ROUNDS=$rounds PODPATH_KATRAN_PKTS=$pkts \
  timeout 1800 go test -count=1 -run '^$' -bench '^BenchmarkKatranSideBySide$' -benchtime 1x ./datapath/progtest/
