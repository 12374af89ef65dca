#!/usr/bin/env bash
# Run the GPU layer against a REAL nvidia-smi, on the GPU box itself (connection local, nothing changed):
# the nvidia_gpu_facts module, the nvidia_check role (normal and --check), and the "no nvidia-smi" path
# on a box whose PCI bus does hold an NVIDIA device (must say driver_missing, not no_device); the torch build
# sdfleet chooses for this GPU for v1.10.1 and for dev (sdfleet_gpu.torch); and, where python3 has torch, what the
# wheel was built for (get_arch_list), what torch sees (capability, memory: /sdapi/v1/memory's numbers) and one
# CUDA kernel (a timed fp16 matmul), which is what the health gate's txt2img needs.
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
say "torch's view of the same GPUs (MiB), its arch list, and one kernel"
python3 -c 'import time, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "arch", torch._C._cuda_getArchFlags())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    free, total = torch.cuda.mem_get_info(i)
    print(i, p.name, p.total_memory // 2**20, "MiB", "cc %d.%d" % (p.major, p.minor), "mem_get_info total",
          total // 2**20, "MiB")
if torch.cuda.is_available():
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize(); t = time.perf_counter(); (a @ a).sum().item(); torch.cuda.synchronize()
    print("kernel: 4096x4096 fp16 matmul %.4f s" % (time.perf_counter() - t))' 2>&1 | tee -a "$log"

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
        dest: "{{ sdfleet_gpu_out | default('$OUT/sdfleet_gpu.json') }}"
        mode: "0644"
      check_mode: false
EOF
say "ansible-playbook (nvidia_check role)"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" 2>&1 | tee -a "$log"
say "ansible-playbook, webui dev (its torch build for this GPU)"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" -e nvidia_check_webui_version=dev -e "sdfleet_gpu_out=$OUT/sdfleet_gpu-dev.json" \
  2>&1 | tee -a "$log"
say "ansible-playbook --check"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" --check 2>&1 | tee -a "$log"
say "no nvidia-smi on a box with an NVIDIA device on its PCI bus (expect driver_missing)"
ap -i "$OUT/inv.yml" "$OUT/pb.yml" -e nvidia_check_nvidia_smi=/nonexistent/nvidia-smi 2>&1 | tee -a "$log"
say "PCI bus as seen here"
grep -l 0x10de /sys/bus/pci/devices/*/vendor 2>&1 | head -3 | tee -a "$log"
rm -f "$OUT/inv.yml" "$OUT/pb.yml"
exit 0
