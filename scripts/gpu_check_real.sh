#!/usr/bin/env bash
# Run the GPU layer against a REAL nvidia-smi, on the GPU box itself (connection local, nothing changed):
# the nvidia_gpu_facts module, the nvidia_check role (normal and --check), and the "no nvidia-smi" path
# on a box whose PCI bus does hold an NVIDIA device (must say driver_missing, not no_device).
# Writes the raw captures and the results under $OUT (default build/gpu-check) for the unit tests.
# Needs ansible-core importable by python3 (PYTHONPATH may point at a --target install).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu-check}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
export LANG=C.UTF-8 LC_ALL=C.UTF-8 ANSIBLE_CONFIG=$PWD/ansible.cfg ANSIBLE_NOCOLOR=1
ap() { python3 -c 'import sys; from ansible.cli.playbook import main; sys.argv[0]="ansible-playbook"; main()' "$@"; }

log=$OUT/run.txt
: >"$log"
say() { printf '\n== %s\n' "$*" | tee -a "$log"; }

say "nvidia-smi (table)"
nvidia-smi >"$OUT/table.txt" 2>&1; echo "rc=$?" | tee -a "$log"
say "nvidia-smi --query-gpu (the module's query)"
nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid,pci.bus_id,compute_cap,mig.mode.current \
  --format=csv,noheader,nounits >"$OUT/csv.txt" 2>&1; echo "rc=$?" | tee -a "$log"
cat "$OUT/csv.txt" | tee -a "$log"
say "torch's view of the same GPUs (MiB)"
python3 -c 'import torch
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, p.name, p.total_memory // 2**20, "MiB", "cc %d.%d" % (p.major, p.minor))' 2>&1 | tee -a "$log"

cat >"$OUT/inv.yml" <<'EOF'
all:
  hosts:
    gpu-box: {ansible_connection: local, ansible_python_interpreter: python3}
EOF
cat >"$OUT/pb.yml" <<EOF
- name: nvidia_check against the real nvidia-smi
  hosts: all
  gather_facts: false
  roles: [nvidia_check]
  tasks:
    - name: Save sdfleet_gpu
      ansible.builtin.copy:
        content: "{{ sdfleet_gpu | to_nice_json }}\n"
        dest: "$OUT/sdfleet_gpu.json"
        mode: "0644"
      check_mode: false
EOF
say "ansible-playbook (nvidia_check role)"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" 2>&1 | tee -a "$log"
say "ansible-playbook --check"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" --check 2>&1 | tee -a "$log"
say "no nvidia-smi on a box with an NVIDIA device on its PCI bus (expect driver_missing)"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" -e nvidia_check_nvidia_smi=/nonexistent/nvidia-smi 2>&1 | tee -a "$log"
say "PCI bus as seen here"
grep -l 0x10de /sys/bus/pci/devices/*/vendor 2>&1 | head -3 | tee -a "$log"
rm -f "$OUT/inv.yml" "$OUT/pb.yml"
exit 0
