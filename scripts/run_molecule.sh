#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/ (or the ones named),
# MOLECULE_JOBS at a time, longest first (the last run's durations, else the
# hints below), one log per scenario under build/molecule-logs/.
# Prints a per-scenario table and a closing "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
jobs=${MOLECULE_JOBS:-2}
logdir=build/molecule-logs
mkdir -p "$logdir"

if (($#)); then
  scenarios=("$@")
else
  mapfile -t scenarios < <(find molecule -mindepth 2 -maxdepth 2 -name molecule.yml \
    -not -path 'molecule/_shared/*' | cut -d/ -f2 | sort)
fi

# The real-webui scenarios need the real upstream fixture (make real-fixture), which needs ../shared/upstream.
if [ ! -f build/real-fixture/pins.json ]; then
  mapfile -t scenarios < <(printf '%s\n' "${scenarios[@]}" | grep -vx 'real_webui')
  echo "real_webui: SKIPPED (no build/real-fixture: ../shared/upstream, the real webui trees, is missing)"
fi

# Seconds each scenario took on a quiet 2-core machine; only the order matters.
declare -A hint=([real_webui]=1200 [site]=700 [webui_models]=420 [webui_models_faults]=380 [webui_service]=300 [webui_repo]=220
  [nvidia_check_errors]=140 [python]=115 [nvidia_check]=110 [webui_service_refusals]=105
  [webui_repo_refusals]=100 [git]=95 [preflight]=80 [bed]=50)
duration() {
  local last rc secs
  if last=$(cat "$logdir/$1.result" 2>/dev/null) && read -r _ rc secs <<<"$last" && [ "$rc" = 0 ]; then
    echo "$secs"
  else
    echo "${hint[$1]:-600}"
  fi
}
mapfile -t scenarios < <(for s in "${scenarios[@]}"; do echo "$(duration "$s") $s"; done | sort -k1,1nr -k2 | cut -d' ' -f2)

# A scenario whose very first step, the destroy of containers that do not exist yet, fails has tested nothing: it
# runs once more (its first log kept as <scenario>.first.log and named in the output). Any later failure stands.
run_one() {
  local s=$1 start rc log="build/molecule-logs/$1.log"
  start=$(date +%s)
  molecule test -s "$s" >"$log" 2>&1
  rc=$?
  if [ $rc -ne 0 ] && ! grep -q "➜ .*create.*: .*Executing" "$log" && grep -q "➜ .*destroy.*: .*Executed: Failed" "$log"; then
    mv "$log" "build/molecule-logs/$s.first.log"
    echo "$s: its first destroy failed before anything was created (log build/molecule-logs/$s.first.log); running it again"
    grep -n -A12 "fatal:\|FAILED!" "build/molecule-logs/$s.first.log" | head -40
    molecule test -s "$s" >"$log" 2>&1
    rc=$?
  fi
  echo "$s $rc $(($(date +%s) - start))" >"build/molecule-logs/$s.result"
  printf '%-28s %s (%ss)\n' "$s" "$([ $rc -eq 0 ] && echo passed || echo FAILED)" "$(($(date +%s) - start))"
}
export -f run_one

rm -f "$logdir"/*.result
printf '%s\n' "${scenarios[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'

passed=0 failed=0
for s in "${scenarios[@]}"; do
  read -r _ rc _ <"$logdir/$s.result" || rc=1
  if [ "$rc" -eq 0 ]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "---- $s failed; its failed tasks, then the last lines of $logdir/$s.log ----"
    grep -n -B3 -A25 "fatal:\|FAILED!\|ERROR!" "$logdir/$s.log" | head -150
    echo "----"
    tail -n 60 "$logdir/$s.log"
  fi
done
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
