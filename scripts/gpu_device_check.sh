#!/usr/bin/env bash
# What only a real GPU shows, in one short run (the `device` tool's machine, when one is lent; never in CI):
#   1. nvidia-smi as nvidia_gpu_facts reads it (the query csv and the default table): new captures for
#      tests/fixtures/nvidia-smi/;
#   2. sdfleet's decision for that host: the parsed facts, gpu_plan, and torch_plan for v1.10.1 and dev;
#   3. if a Python with torch is there: torch's version, CUDA, get_arch_list(), the capability and memory torch
#      sees on device 0 (what /sdapi/v1/memory reports), and one CUDA kernel (a matmul), timed.
# Writes everything under $OUT (default build/gpu-device-check); prints a summary. Usage: scripts/gpu_device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu-device-check}
mkdir -p "$out"
fields=index,name,memory.total,driver_version,uuid,pci.bus_id,compute_cap,mig.mode.current
nvidia-smi --query-gpu="$fields" --format=csv >"$out/query.csv" 2>&1; echo "query rc=$?" | tee "$out/rc.txt"
nvidia-smi >"$out/table.txt" 2>&1; echo "table rc=$?" | tee -a "$out/rc.txt"

PYTHONPATH=collections python3 - "$out" <<'PY' 2>&1 | tee "$out/decision.txt"
import json, pathlib, sys
import yaml
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi as smi
from ansible_collections.sdfleet.toolkit.plugins.filter import gpu_tier, torch_build
out = pathlib.Path(sys.argv[1])
gpus = smi.parse_query_csv((out / "query.csv").read_text())
facts = smi.Facts(smi.STATE_OK, gpus=gpus, driver_version=gpus[0].driver_version if gpus else None).as_dict()
defaults = yaml.safe_load(pathlib.Path("roles/nvidia_check/defaults/main.yml").read_text())
plan = gpu_tier.gpu_plan(facts, defaults["nvidia_check_tier_table"], defaults["nvidia_check_quirks"],
                         cpu_flags=defaults["nvidia_check_cpu_flags"])
result = {"facts": facts, "plan": plan,
          "torch": {v: torch_build.torch_plan(plan, v) for v in ("v1.10.1", "dev")}}
(out / "decision.json").write_text(json.dumps(result, indent=2, default=str))
for version, decided in result["torch"].items():
    print(version, decided["state"], (decided.get("torch") or {}).get("build"), decided.get("message", ""))
PY

python3 - "$out" <<'PY' 2>&1 | tee "$out/torch.txt"
import json, pathlib, sys, time
out = pathlib.Path(sys.argv[1])
try:
    import torch
except ImportError as exc:
    print(f"no torch here ({exc}): step 3 skipped"); sys.exit(0)
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "arch_flags": torch._C._cuda_getArchFlags().split(),
        "available": torch.cuda.is_available()}
if info["available"]:
    free, total = torch.cuda.mem_get_info(0)
    info.update(capability=".".join(map(str, torch.cuda.get_device_capability(0))), name=torch.cuda.get_device_name(0),
                mem_total_mib=total // 2**20, arch_list=torch.cuda.get_arch_list())
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.float16)
    torch.cuda.synchronize(); start = time.perf_counter(); (a @ a).sum().item(); torch.cuda.synchronize()
    info["matmul_4096_fp16_s"] = round(time.perf_counter() - start, 4)
(out / "torch.json").write_text(json.dumps(info, indent=2))
print(json.dumps(info))
PY
