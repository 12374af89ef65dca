#!/usr/bin/env bash
# Run `molecule test` for every scenario under molecule/ (or the ones named),
# MOLECULE_JOBS at a time, one log per scenario under build/molecule-logs/.
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

run_one() {
  local s=$1 start rc
  start=$(date +%s)
  molecule test -s "$s" >"build/molecule-logs/$s.log" 2>&1
  rc=$?
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
    echo "---- $s failed; last lines of $logdir/$s.log ----"
    tail -n 60 "$logdir/$s.log"
  fi
done
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
