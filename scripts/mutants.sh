#!/usr/bin/env bash
# Mutation self-test of the conformance catalog: every mutants/*.patch is a small,
# realistic datapath bug. For each one, in a scratch clone of this repository's HEAD
# (the working tree is never touched), the patch is applied, the BPF objects are
# regenerated, bin/ is built, the objects are loaded once per catalog config (a patch
# the verifier refuses is no mutant: "broken"), then the catalog scenarios the patch
# names run until one of their checks fails (that check caught it), and the Go test
# packages it names run when no scenario caught it (or always, MUTANTS_TESTS=all).
# Results: a table on stdout and in artifacts/mutants.txt, and artifacts/mutants.json,
# rewritten after every mutant. Exit status 1 when any mutant is not caught by a
# catalog scenario (survived, caught by tests only, timed out, broken).
#
# A patch's header names what should catch it:
#   # mutant: NAME
#   # bug: one line
#   # scenarios: catalog scenario names, in the order to try
#   # tests: Go packages (./datapath/loader/ ...)
# (or a sidecar mutants/NAME.scenarios with the same "scenarios:" and "tests:" lines).
#
# Environment:
#   MUTANTS=a,b            only these mutants (names without .patch)
#   MUTANTS_SCENARIO_TIMEOUT=S  seconds one scenario run may take (default 300;
#                          the whole catalog passes in about 2 minutes); a run
#                          cut off by it is a timeout, never a catch
#   MUTANTS_TEST_TIMEOUT=D go test -timeout (default 300s)
#   MUTANTS_TESTS=auto|all|none  when to run the Go tests (default auto: only when no
#                          scenario caught the mutant)
#   MUTANTS_ALL_SCENARIOS=1  run every named scenario to its end (default: stop a run
#                          at its first failed check and skip the remaining scenarios)
#   MUTANTS_BASELINE=1     first run the named scenarios on the unmutated tree; checks
#                          that fail there do not count as catches
#   MUTANTS_BUILD_ONLY=1   only apply, build and load each mutant (result "loaded")
#   ARTIFACTS=DIR          where mutants.{txt,json} and the run logs go (default artifacts)
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export PATH="$PATH:/usr/local/go/bin"
artifacts=${ARTIFACTS:-$root/artifacts}
scen_timeout=${MUTANTS_SCENARIO_TIMEOUT:-300}
test_timeout=${MUTANTS_TEST_TIMEOUT:-300s}
tests_mode=${MUTANTS_TESTS:-auto}
all_scen=${MUTANTS_ALL_SCENARIOS:-0}
baseline=${MUTANTS_BASELINE:-0}
build_only=${MUTANTS_BUILD_ONLY:-0}
logs=$artifacts/mutants-logs

if ((EUID != 0)); then
  echo "mutants: run as root (the scenarios build namespaces and load BPF)" >&2
  exit 2
fi

# ---- the mutants to run --------------------------------------------------------------
patches=()
if [[ -n ${MUTANTS:-} ]]; then
  IFS=, read -ra wanted <<<"$MUTANTS"
  for n in "${wanted[@]}"; do
    n=${n%.patch}
    [[ -f mutants/$n.patch ]] || { echo "mutants: no mutants/$n.patch" >&2; exit 2; }
    patches+=("mutants/$n.patch")
  done
else
  for p in mutants/*.patch; do patches+=("$p"); done
fi
((${#patches[@]})) || { echo "mutants: no mutants/*.patch" >&2; exit 2; }

# meta PATCH KEY: the value of a "# KEY:" header line of the patch (or its sidecar).
meta() {
  local patch=$1 key=$2 side=${1%.patch}.scenarios v
  v=$(sed -n "s/^# $key: *//p" "$patch" | head -1)
  if [[ -z $v && -f $side ]]; then
    v=$(sed -n "s/^#\? *$key: *//p" "$side" | head -1)
  fi
  printf '%s' "$v"
}

# ---- scratch clone, removed on every exit ----------------------------------------------
scratch=$(mktemp -d /tmp/podpath-mutants.XXXXXX)
tree=$scratch/tree
child=""
cleanup() {
  if [[ -n $child ]] && kill -0 "$child" 2>/dev/null; then
    stop_run "$child"
  fi
  rm -rf "$scratch"
}
interrupted() {
  echo "mutants: interrupted; stopping the running scenario (it tears its topology down)" >&2
  cleanup
  trap - EXIT
  exit 130
}
trap cleanup EXIT
trap interrupted INT TERM

base=$(git rev-parse HEAD)
if ! git diff --quiet HEAD -- bpf datapath cmd scenarios topology internal; then
  echo "mutants: note: the working tree has uncommitted changes; the mutants run against HEAD $base" >&2
fi
git clone -q --shared --no-checkout "$root" "$tree" && git -C "$tree" checkout -q --detach "$base" || {
  echo "mutants: cannot clone $root into $tree" >&2
  exit 2
}
mkdir -p "$artifacts" "$logs"
export PODPATH_AGENT=$tree/bin/podpath-agent

# reset_tree: the clone back at base, nothing else in it but the build outputs.
reset_tree() {
  git -C "$tree" checkout -q -f "$base" && git -C "$tree" clean -q -fdx -e bin -e .gocache
}

# build LOG: regenerate the BPF objects (only when bpf/ differs from base: clang on every
# object costs most of a build on a loaded machine), build bin/ and the load checker.
build() {
  local log=$1
  (
    cd "$tree" &&
      { git diff --quiet "$base" -- bpf || go generate ./datapath/bpfobj/; } &&
      go build -o bin/ ./cmd/podpath ./cmd/podpath-agent ./mutants/loadcheck
  ) >"$log" 2>&1
}

# now_ms: wall-clock milliseconds.
now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((t / 1000))
}

# secs MS: milliseconds as seconds with one decimal.
secs() {
  printf '%d.%d' $(($1 / 1000)) $((($1 % 1000) / 100))
}

# stop_run PID: SIGINT (podpath tears its topology down), then TERM, then KILL.
stop_run() {
  local pid=$1 i
  kill -INT "$pid" 2>/dev/null
  for ((i = 0; i < 120; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "mutants: podpath run $pid did not stop within 120 s of SIGINT: SIGTERM" >&2
    kill -TERM "$pid" 2>/dev/null
    sleep 10
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
}

# first_fail LOG IGNORE: the name of the first failed check in a podpath run log whose
# name is not a line of file IGNORE (baseline failures), or nothing.
first_fail() {
  local log=$1 ignore=$2 name
  while IFS= read -r name; do
    if [[ ! -s $ignore ]] || ! grep -qxF -- "$name" "$ignore"; then
      printf '%s' "$name"
      return
    fi
  done < <(sed -n 's/^FAIL  //p' "$log")
}

# evidence LOG CHECK: the first lines of that check's evidence, on one line.
evidence() {
  awk -v check="$2" '
    $0 == "FAIL  " check { on = 1; next }
    on && /^(PASS|FAIL)  / { exit }
    on && /^      evidence:/ { ev = 1; next }
    on && ev && /^        / { sub(/^ +/, ""); out = out (n++ ? " | " : "") $0; if (n == 4) exit }
    END { print substr(out, 1, 300) }
  ' "$1"
}

# run_scenario NAME LOG IGNORE: runs one catalog scenario in the clone. Sets r_status
# (caught, passed, timeout, error), r_check, r_secs (seconds to the catching check's
# line, or the run's length) and r_ev.
run_scenario() {
  local name=$1 log=$2 ignore=$3 start now pid check="" seen=0 rc
  r_status="" r_check="" r_secs="" r_ev=""
  start=$(now_ms)
  (cd "$tree" && exec ./bin/podpath run "$name" --json --artifacts "$scratch/run-$name") \
    >"$log.json" 2>"$log" &
  pid=$!
  child=$pid
  while kill -0 "$pid" 2>/dev/null; do
    sleep 0.5
    now=$(now_ms)
    if [[ -z $check ]]; then
      check=$(first_fail "$log" "$ignore")
      [[ -n $check ]] && r_secs=$(secs $((now - start)))
    fi
    if [[ -n $check && $all_scen != 1 ]]; then
      # Give the evidence lines a moment to be written, then stop the run.
      ((seen++ >= 3)) && { stop_run "$pid"; break; }
    fi
    if ((now - start > scen_timeout * 1000)); then
      stop_run "$pid"
      [[ -z $check ]] && r_status=timeout r_secs=$(secs $((now - start)))
      break
    fi
  done
  wait "$pid" 2>/dev/null
  rc=$?
  child=""
  # A FAIL printed after the timeout's SIGINT is evidence of the timeout, not a catch:
  # a mutant that makes a step hang is a harness bug (a wait without a deadline).
  if [[ $r_status == timeout ]]; then
    r_ev=$(first_fail "$log" "$ignore")
    r_ev=${r_ev:+"after the stop: $r_ev"}
  else
    [[ -z $check ]] && check=$(first_fail "$log" "$ignore")
  fi
  if [[ -n $check ]]; then
    r_status=caught r_check=$check r_ev=$(evidence "$log" "$check")
    [[ -z $r_secs ]] && r_secs=$(secs $(($(now_ms) - start)))
  elif [[ -z $r_status ]]; then
    r_secs=$(secs $(($(now_ms) - start)))
    if ((rc == 0)); then
      r_status=passed
    else
      r_status=error
      r_ev="exit $rc: $(grep -v '^\s*$' "$log" | tail -3 | tr '\n\t' '  ' | cut -c1-300)"
    fi
  fi
  rm -rf "$scratch/run-$name"
}

# ---- results -----------------------------------------------------------------------------
# One line per mutant, fields separated by US (0x1f): tabs are whitespace to read.
results=$scratch/results
: >"$results"

json_str() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\t'/ }
  s=${s//$'\n'/ }
  s=${s//$'\r'/ }
  printf '"%s"' "$(printf '%s' "$s" | tr -d '\000-\037')"
}

# write_reports: artifacts/mutants.txt (the table and the details) and mutants.json.
write_reports() {
  local txt=$artifacts/mutants.txt json=$artifacts/mutants.json first=1
  local name result scen check secs ev tests_res tests_ev desc scen_log
  {
    printf '%-38s %-10s %-58s %6s\n' MUTANT RESULT "CAUGHT BY" "FAIL S"
    while IFS=$'\x1f' read -r name result scen check secs ev tests_res tests_ev desc scen_log; do
      local by="-"
      case $result in
        caught) by="$scen: $check" ;;
        test-only) by="tests: $tests_ev" ;;
        timeout | error | broken) by="$ev" ;;
      esac
      printf '%-38s %-10s %-58s %6s\n' "$name" "$result" "${by:0:58}" "${secs:--}"
    done <"$results"
    echo
    awk -F'\x1f' '{ n[$2]++ } END { printf "%d mutants:", NR; for (k in n) printf " %d %s", n[k], k; print "" }' "$results"
    echo
    echo "time to the first failed check, per catching scenario (s):"
    awk -F'\x1f' '$2 == "caught" { n[$3]++; t[$3] = t[$3] " " $5 } END { for (k in n) printf "  %-20s %2d caught:%s\n", k, n[k], t[k] }' "$results" | sort
    if [[ -s ${ignore:-} ]]; then
      echo
      echo "checks that failed on the unmutated tree (MUTANTS_BASELINE=1), not counted as catches:"
      sed 's/^/  /' "$ignore"
    fi
    echo
    echo "details:"
    while IFS=$'\x1f' read -r name result scen check secs ev tests_res tests_ev desc scen_log; do
      echo "- $name ($result): $desc"
      [[ $result == caught ]] && echo "    caught by scenario $scen, check \"$check\", ${secs}s into the run"
      [[ -n $ev ]] && echo "    evidence: $ev"
      [[ -n $scen_log ]] && echo "    scenarios: $scen_log"
      [[ -n $tests_res ]] && echo "    tests: $tests_res${tests_ev:+: $tests_ev}"
    done <"$results"
  } >"$txt"
  {
    echo "["
    while IFS=$'\x1f' read -r name result scen check secs ev tests_res tests_ev desc scen_log; do
      ((first)) || echo ","
      first=0
      printf '  {"mutant": %s, "result": %s, "scenario": %s, "check": %s, "secondsToFail": %s, "evidence": %s, "tests": %s, "testFailures": %s, "bug": %s, "scenarioRuns": %s}' \
        "$(json_str "$name")" "$(json_str "$result")" "$(json_str "$scen")" "$(json_str "$check")" \
        "${secs:-null}" "$(json_str "$ev")" "$(json_str "$tests_res")" "$(json_str "$tests_ev")" \
        "$(json_str "$desc")" "$(json_str "$scen_log")"
    done <"$results"
    echo
    echo "]"
  } >"$json"
}

record() { # name result scen check secs ev tests_res tests_ev desc scen_log
  local f out=""
  for f in "$@"; do
    f=${f//$'\x1f'/ }
    f=${f//$'\n'/ }
    out+="$f"$'\x1f'
  done
  printf '%s\n' "${out%$'\x1f'}" >>"$results"
  write_reports
}

# ---- baseline ------------------------------------------------------------------------------
ignore=$scratch/baseline-failures
: >"$ignore"
reset_tree
echo "mutants: building the unmutated tree ($base)"
if ! build "$logs/baseline-build.log"; then
  echo "mutants: the unmutated tree does not build: see $logs/baseline-build.log" >&2
  exit 2
fi
if ((baseline && !build_only)); then
  declare -A seen_scen=()
  for p in "${patches[@]}"; do
    for s in $(meta "$p" scenarios); do
      [[ -n ${seen_scen[$s]:-} ]] && continue
      seen_scen[$s]=1
      echo "mutants: baseline: podpath run $s"
      r_status=""
      saved=$all_scen all_scen=1
      run_scenario "$s" "$logs/baseline.$s.log" /dev/null
      all_scen=$saved
      sed -n 's/^FAIL  //p' "$logs/baseline.$s.log" >>"$ignore"
      echo "mutants: baseline $s: $r_status in ${r_secs}s"
    done
  done
fi

# ---- the mutants -----------------------------------------------------------------------------
total_start=$(date +%s)
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  desc=$(meta "$p" bug)
  scens=$(meta "$p" scenarios)
  pkgs=$(meta "$p" tests)
  echo
  echo "=== mutant $name: $desc"
  reset_tree
  if ! git -C "$tree" apply "$root/$p" 2>"$logs/$name.apply.log"; then
    record "$name" broken "" "" "" "patch does not apply: $(head -2 "$logs/$name.apply.log" | tr '\n' ' ')" "" "" "$desc" ""
    echo "    broken: the patch does not apply"
    continue
  fi
  if ! build "$logs/$name.build.log"; then
    record "$name" broken "" "" "" "does not build: $(grep -m2 -E 'error|Error' "$logs/$name.build.log" | tr '\n' ' ')" "" "" "$desc" ""
    echo "    broken: does not build (see $logs/$name.build.log)"
    continue
  fi
  if ! "$tree/bin/loadcheck" >"$logs/$name.load.log" 2>&1; then
    record "$name" broken "" "" "" "refused at load: $(grep -m1 loadcheck "$logs/$name.load.log" | cut -c1-200)" "" "" "$desc" ""
    echo "    broken: the verifier (or loader) refuses it (see $logs/$name.load.log)"
    continue
  fi
  if ((build_only)); then
    record "$name" loaded "" "" "" "" "" "" "$desc" ""
    echo "    loaded"
    continue
  fi

  result="" c_scen="" c_check="" c_secs="" c_ev="" runs=""
  for s in $scens; do
    echo "    podpath run $s"
    run_scenario "$s" "$logs/$name.$s.log" "$ignore"
    echo "      $r_status after ${r_secs}s${r_check:+: $r_check}"
    runs+="${runs:+; }$s: $r_status ${r_secs}s${r_check:+ ($r_check)}"
    case $r_status in
      caught)
        if [[ -z $c_scen ]]; then
          result=caught c_scen=$s c_check=$r_check c_secs=$r_secs c_ev=$r_ev
        fi
        [[ $all_scen == 1 ]] || break
        ;;
      timeout) [[ -z $result ]] && result=timeout c_secs=$r_secs c_ev="$s: no verdict within ${scen_timeout}s" ;;
      error) [[ -z $result || $result == timeout ]] && result=error c_ev="$s: $r_ev" ;;
    esac
  done

  t_res="" t_ev=""
  if [[ -n $pkgs && ($tests_mode == all || ($tests_mode == auto && $result != caught)) ]]; then
    echo "    go test $pkgs"
    # shellcheck disable=SC2086
    if (cd "$tree" && go test -count=1 -timeout "$test_timeout" $pkgs) >"$logs/$name.test.log" 2>&1; then
      t_res=passed
    else
      t_res=failed
      t_ev=$(grep -E '^\s*--- FAIL|^FAIL|panic:' "$logs/$name.test.log" | head -3 | sed 's/^ *//' | tr '\n' ' ')
    fi
    echo "      tests $t_res${t_ev:+: $t_ev}"
  fi
  if [[ $result != caught ]]; then
    if [[ $t_res == failed ]]; then
      [[ -z $result ]] && result=test-only
    else
      [[ -z $result ]] && result=survived
    fi
  fi
  record "$name" "$result" "$c_scen" "$c_check" "$c_secs" "$c_ev" "$t_res" "$t_ev" "$desc" "$runs"
  echo "    => $result"
done

echo
cat "$artifacts/mutants.txt"
echo
echo "mutants: $(( $(date +%s) - total_start ))s; artifacts/mutants.{txt,json}, logs in $logs"
if awk -F'\x1f' -v ok="$( ((build_only)) && echo loaded || echo caught)" '$2 != ok { bad = 1 } END { exit !bad }' "$results"; then
  exit 1
fi
exit 0
