#!/usr/bin/env bash
# The demo fleet: `scripts/demo.sh up` (make demo) / `scripts/demo.sh down` (make demo-down).
# up: starts the containers (three GPU boxes with a fake nvidia-smi and the stand-in webui, the fleet mirror
# host, the "upstream" fixture server standing in for GitHub/PyPI/HuggingFace, and a CPU box running the REAL
# webui v1.10.1 from the real upstream fixture, when build/real-fixture exists) on the docker network sdfleet-demo,
# provisions them with site.yml, checks that every webui answers on 127.0.0.1 and prints the URLs.
# Idempotent: a second `up` reuses the containers and the converge reports changed=0.
# Needs what `make venv images fixture` builds (make demo runs those first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NET=sdfleet-demo
IMAGE=sdfleet/webui-host:bookworm
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
PLAYBOOK="$ROOT/.venv/bin/ansible-playbook"
# name -> published ports (127.0.0.1:<host port>:<container port>), as in inventories/demo/host_vars.
declare -A PORTS=(
  [sdfleet-demo-small]="17860:7860"
  [sdfleet-demo-mid]="17870:7860"
  [sdfleet-demo-dual]="17880:7860 17881:7861"
  [sdfleet-demo-mirror]=""
  [sdfleet-demo-real]="17890:7860"
)
SYSTEMD_OPTS=(--cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp --cgroupns host)

log() { printf '\033[1m== %s\033[0m\n' "$*"; }

running() { [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

start() {  # start <name> <docker run args...>: create it once, start it when stopped
  local name=$1; shift
  if running "$name"; then return; fi
  if docker inspect "$name" >/dev/null 2>&1; then docker start "$name" >/dev/null; return; fi
  docker run -d --name "$name" --hostname "$name" --network "$NET" "$@" >/dev/null
}

up() {
  [ -f build/fixture/pins.json ] || { echo "build/fixture missing: run make fixture (or make demo)" >&2; exit 1; }
  docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "$IMAGE missing: run make images" >&2; exit 1; }
  log "network $NET and containers"
  docker network inspect "$NET" >/dev/null 2>&1 || docker network create "$NET" >/dev/null
  start sdfleet-demo-upstream -v "$ROOT/build/fixture:/srv/fixture:ro" "$IMAGE" \
    python3 /srv/fixture/bin/mirror_server.py --root /srv/fixture --port 8080
  local limit=()
  if [ -f build/real-fixture/pins.json ]; then
    start sdfleet-demo-real-upstream -v "$ROOT/build/real-fixture:/srv/fixture:ro" "$IMAGE" \
      python3 /srv/fixture/bin/mirror_server.py --root /srv/fixture --port 8080
  else
    echo "  no build/real-fixture (../shared/upstream, the real webui trees, is missing): no real webui box"
    unset 'PORTS[sdfleet-demo-real]'
    limit=(--limit 'all:!sdfleet-demo-real')
  fi
  for name in "${!PORTS[@]}"; do
    local publish=()
    for p in ${PORTS[$name]}; do publish+=(-p "127.0.0.1:$p"); done
    start "$name" "${SYSTEMD_OPTS[@]}" "${publish[@]}" "$IMAGE" /lib/systemd/systemd
  done
  for _ in $(seq 30); do
    docker exec sdfleet-demo-upstream python3 -c \
      'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8080/_ping")' 2>/dev/null && break
    sleep 1
  done

  log "fake nvidia-smi on the GPU boxes"
  "$PLAYBOOK" -i inventories/demo playbooks/demo_prepare.yml "${limit[@]}" "$@"
  log "ansible-playbook -i inventories/demo site.yml"
  "$PLAYBOOK" -i inventories/demo site.yml "${limit[@]}" "$@"

  log "where the webuis answer, through each box's front door (login: demo / demo-password-1)"
  local rc=0 certs="$ROOT/build/demo-certs"
  mkdir -p "$certs"
  for name in sdfleet-demo-small sdfleet-demo-mid sdfleet-demo-dual sdfleet-demo-real; do
    [ -n "${PORTS[$name]+set}" ] || continue
    # Each box's self-signed certificate (it names 127.0.0.1, where docker publishes the port): curl checks it.
    docker exec "$name" cat /etc/nginx/sd-webui/front-door.crt >"$certs/$name.crt" 2>/dev/null || true
    for p in ${PORTS[$name]}; do
      local url="https://127.0.0.1:${p%%:*}/"
      local code
      code=$(curl -s --cacert "$certs/$name.crt" -o /dev/null -w '%{http_code}' --max-time 10 "${url}internal/ping" || true)
      if [ "$code" = 200 ]; then
        local what="simulated GPU box, stand-in webui"
        [ "$name" = sdfleet-demo-real ] && what="REAL webui v1.10.1 on the CPU"
        printf '  %-22s %s  answers (%s; %s)\n' "$name" "$url" \
          "$(curl -s --cacert "$certs/$name.crt" -o /dev/null -w 'GET / -> HTTP %{http_code}' "$url")" "$what"
      else
        printf '  %-22s %s  NOT ANSWERING (HTTP %s)\n' "$name" "$url" "$code"; rc=1
      fi
    done
  done
  echo "  certificates (self-signed; their fingerprints are in the report): $certs/"
  echo "  fleet report: $ROOT/reports/fleet-report.html (and fleet-report.md)"
  echo "  remove it all: make demo-down"
  return $rc
}

down() {
  log "removing the demo fleet"
  for name in sdfleet-demo-upstream sdfleet-demo-real-upstream "${!PORTS[@]}"; do
    docker rm -f "$name" >/dev/null 2>&1 && echo "  removed $name" || true
  done
  docker network rm "$NET" >/dev/null 2>&1 && echo "  removed network $NET" || true
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  *) echo "usage: $0 up [ansible-playbook options] | down" >&2; exit 2 ;;
esac
