#!/usr/bin/env bash
# Make sure this machine can run the test bed: Debian's docker.io and
# debootstrap installed, a docker engine answering. A running engine is left
# alone; one that is not running is started in the background.
set -euo pipefail

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v git >/dev/null 2>&1 || need+=(git)
if ((${#need[@]})); then
  echo "ensure_docker: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

echo "ensure_docker: starting dockerd"
mkdir -p /var/log
nohup dockerd >/var/log/sdfleet-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "ensure_docker: dockerd did not answer within 60 s; see /var/log/sdfleet-dockerd.log" >&2
tail -n 20 /var/log/sdfleet-dockerd.log >&2 || true
exit 1
