#!/usr/bin/env bash
# Run an Ansible command with mitogen's linear strategy, the opt-in accelerator (make bench prints what it gains):
#   scripts/with_mitogen.sh .venv/bin/ansible-playbook -i inventories/<fleet> site.yml
# mitogen keeps one Python interpreter per host for the whole run instead of starting one per task. It is opt-in:
# the plain strategy stays the default, and a run that misbehaves under mitogen is rerun without this wrapper.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${SDFLEET_PYTHON:-$root/.venv/bin/python}"
if ! dir=$("$python" -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))' 2>/dev/null); then
  echo "with_mitogen.sh: mitogen is not installed for $python. Fix: make venv (it is in pyproject.toml's dev" \
       "dependencies), or pip install mitogen==0.3.54 into the Python that runs Ansible (SDFLEET_PYTHON)." >&2
  exit 2
fi
export ANSIBLE_STRATEGY_PLUGINS="$dir/plugins/strategy${ANSIBLE_STRATEGY_PLUGINS:+:$ANSIBLE_STRATEGY_PLUGINS}"
export ANSIBLE_STRATEGY=mitogen_linear
exec "$@"
