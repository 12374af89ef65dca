#!/usr/bin/env python3
"""Benchmark the planning filters and the fleet report on a simulated fleet (no containers, no hosts, no network).

A fleet of ``--hosts`` GPU hosts (default 500) and one fleet mirror is made up in memory, deterministic for a
``--seed``: 1-8 GPUs per host from a mix of cards (GTX 750 Ti 2 GB to A100 80 GB and RTX 5090), a few CPU hosts,
a few hosts that fail (driver/library mismatch, a driver too old for torch, GPUs no single torch build runs, an
instance that never answers) and a few never reached. Each host then goes through the project's own code, the
way a run does:

1. probe: ``module_utils/nvidia_smi.collect`` (what ``nvidia_gpu_facts`` returns) over a fake ``nvidia-smi``
   that prints the CSV of the host's cards (and refuses ``compute_cap`` on pre-510 drivers, as real ones do);
2. plan: ``gpu_plan`` then ``torch_plan`` with ``roles/nvidia_check/defaults/main.yml``'s tables (the
   ``sdfleet_gpu`` fact, as ``roles/nvidia_check/tasks/main.yml`` publishes it);
3. instances: ``webui_plan`` then ``webui_summary`` (``sdfleet_instances``, as ``webui_service`` publishes it);
4. mirror indexes: ``torch_mirror_indexes`` over the fleet (what the mirror downloads);
5. report data: ``fleet_report_data(hostvars, groups, stored)`` over plain dicts, then over Ansible's own
   ``HostVars`` (an in-memory inventory whose hosts carry the facts), then "the report alone"
   (``playbooks/report.yml`` with no host reached: empty hostvars, every row from the stored ``fresh`` rows);
6. render: both report templates (``templates/fleet_report.{md,html}.j2``) through Ansible's ``Templar`` with the
   template module's settings (trim_blocks, no backslash escaping) and the ``ansible_managed`` text of
   ``playbooks/steps/write_report.yml``.

Printed per step: the wall time (``time.perf_counter``, best of ``--repeat`` runs, tracemalloc off) and the peak
of the Python memory the step allocated (``tracemalloc``, one more run); at the end the process's peak RSS
(``resource.getrusage``). The last line starts with ``sim:``. Every figure comes from this one run.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import pathlib
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional, TypeVar

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT / "collections") not in sys.path:
    sys.path.insert(0, str(ROOT / "collections"))

import yaml  # noqa: E402

from ansible_collections.sdfleet.toolkit.plugins.filter.fleet_report import fleet_report_data  # noqa: E402
from ansible_collections.sdfleet.toolkit.plugins.filter.gpu_tier import gpu_plan  # noqa: E402
from ansible_collections.sdfleet.toolkit.plugins.filter.torch_build import (  # noqa: E402
    torch_mirror_indexes, torch_plan)
from ansible_collections.sdfleet.toolkit.plugins.filter.webui_args import webui_plan, webui_summary  # noqa: E402
from ansible_collections.sdfleet.toolkit.plugins.module_utils import nvidia_smi  # noqa: E402

T = TypeVar("T")
MIB = 1024 * 1024
MIRROR = "mirror-01"
USABLE = ("ok", "cpu")
# What steps/write_report.yml sets, and the torch indexes of roles/sdfleet/defaults/main.yml.
ANSIBLE_MANAGED = "Managed by sdfleet (playbooks/report.yml); regenerated on every run."
TORCH_CUDA_URL = "https://download.pytorch.org/whl/{build}"
TORCH_CPU_URL = "https://download.pytorch.org/whl/cpu"
TOKEN = "sim-T0ken-42"  # a fake credential in a few sources: the report must redact it


@dataclasses.dataclass(frozen=True)
class Card:
    """One GPU model as nvidia-smi prints it."""

    name: str
    memory_mib: int
    compute_cap: str
    mig: str  # the mig.mode.current cell: "[N/A]" on GeForce cards, "Disabled" on data-centre ones
    weight: int  # how common it is in the simulated fleet
    counts: tuple[int, ...]  # GPUs per host it comes in (picked uniformly)


CARDS: tuple[Card, ...] = (
    Card("NVIDIA GeForce GTX 750 Ti", 2002, "5.0", "[N/A]", 1, (1,)),
    Card("NVIDIA GeForce GTX 1060 6GB", 6078, "6.1", "[N/A]", 3, (1, 1, 2)),
    Card("NVIDIA GeForce RTX 2070", 7981, "7.5", "[N/A]", 2, (1, 2)),
    Card("NVIDIA GeForce RTX 3060", 12288, "8.6", "[N/A]", 5, (1, 1, 2, 4)),
    Card("Tesla T4", 15360, "7.5", "Disabled", 2, (1, 2, 4)),
    Card("NVIDIA GeForce RTX 4090", 24564, "8.9", "[N/A]", 4, (1, 2, 4)),
    Card("NVIDIA A100-SXM4-80GB", 81920, "8.0", "Disabled", 2, (4, 8)),
    Card("NVIDIA GeForce RTX 5090", 32607, "12.0", "[N/A]", 1, (1, 2)),
)
CARD = {card.name: card for card in CARDS}
BLACKWELL = "NVIDIA GeForce RTX 5090"  # only the dev webui's torch (cu128) has kernels for it

# Host kinds: how a host ends up in the report.
GPU, CPU_PINNED, CPU_FALLBACK = "gpu", "cpu_pinned", "cpu_fallback"
FAIL_MISMATCH, FAIL_OLD_DRIVER, FAIL_TORCH_MIX, FAIL_SERVICE = "mismatch", "old_driver", "torch_mix", "service"
NOT_REACHED = "not_reached"
FAILURE_KINDS = (FAIL_MISMATCH, FAIL_OLD_DRIVER, FAIL_TORCH_MIX, FAIL_SERVICE)


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """What the simulation decided about one GPU host."""

    name: str
    kind: str
    cards: tuple[Card, ...]
    driver: str
    webui_version: str
    front_door: bool
    mirror_serving: bool


@dataclasses.dataclass(frozen=True)
class Step:
    """One timed step: best wall time and the traced peak of its allocations."""

    key: str  # a short name, for the summary
    label: str
    seconds: float
    peak_bytes: int

    def line(self) -> str:
        """``"plan 500 hosts: 0.412 s, peak 12.3 MiB"``."""
        return f"{self.label}: {self.seconds:.3f} s, peak {self.peak_bytes / MIB:.1f} MiB"


@dataclasses.dataclass
class BenchResult:
    """Everything one bench run measured and made (the test reads the rendered report from here)."""

    hosts: list[HostSpec]
    steps: list[Step]
    report: dict[str, Any]
    markdown: str
    html: str
    instances: int  # instances the report lists as serving (on the hosts whose status is ok)
    mirror_indexes: dict[str, str]
    hostvars_same: bool
    max_rss_bytes: int = 0
    wall_seconds: float = 0.0  # the whole bench: every timed and traced run, and building the fleet

    @property
    def failed(self) -> list[str]:
        """Names of the hosts the simulation made fail."""
        return [h.name for h in self.hosts if h.kind in FAILURE_KINDS]

    @property
    def not_reached(self) -> list[str]:
        """Names of the hosts the simulation never reached."""
        return [h.name for h in self.hosts if h.kind == NOT_REACHED]


# --------------------------------------------------------------------------- the simulated fleet

def _kinds(count: int, rng: random.Random) -> list[str]:
    """The kind of each of ``count`` hosts: ~3 % failed (the four failures in turn, each at least once), ~0.5 % not
    reached, ~4 % CPU (at least one of each), the rest GPU hosts."""
    failed, gone, cpu = max(len(FAILURE_KINDS), count * 3 // 100), max(1, count // 200), max(1, count // 25)
    special = rng.sample(range(count), min(count, failed + gone + cpu))
    kinds = [GPU] * count
    for n, index in enumerate(special):
        if n < failed:
            kinds[index] = FAILURE_KINDS[n % len(FAILURE_KINDS)]
        elif n < failed + gone:
            kinds[index] = NOT_REACHED
        else:
            kinds[index] = CPU_PINNED if n % 2 else CPU_FALLBACK
    return kinds


def _gpu_cards(rng: random.Random) -> tuple[Card, ...]:
    """A working host's GPUs: one card model, 1-8 of it."""
    card = rng.choices(CARDS, weights=[c.weight for c in CARDS])[0]
    return (card,) * rng.choice(card.counts)


def host_spec(number: int, kind: str, rng: random.Random) -> HostSpec:
    """One host of the simulated fleet: its cards, driver and webui version follow from its kind."""
    cards: tuple[Card, ...] = ()
    driver, version = rng.choice(("550.54.14", "550.54.14", "535.183.01")), "v1.10.1"
    if kind in (GPU, FAIL_MISMATCH, FAIL_SERVICE, NOT_REACHED):
        cards = _gpu_cards(rng)
        version = rng.choices(("v1.10.1", "dev", "v1.9.4"), weights=(85, 10, 5))[0]
    elif kind == FAIL_OLD_DRIVER:  # 470 rejects compute_cap and is older than CUDA 12 needs
        cards, driver = (CARD["NVIDIA GeForce GTX 1060 6GB"],) * 2, "470.256.02"
    elif kind == FAIL_TORCH_MIX:  # no torch build of the dev webui has kernels for both
        cards, version = (CARD["NVIDIA GeForce GTX 750 Ti"], CARD[BLACKWELL]), "dev"
    if any(card.name == BLACKWELL for card in cards):  # a 570 driver, and the webui whose torch runs it
        driver, version = "570.124.06", "dev"
    return HostSpec(name=f"gpu-{number:04d}", kind=kind, cards=cards, driver=driver, webui_version=version,
                    front_door=rng.random() < 0.3, mirror_serving=rng.random() < 0.97)


def fleet_specs(count: int, seed: int) -> list[HostSpec]:
    """``count`` GPU hosts, the same for the same ``seed``."""
    rng = random.Random(seed)
    return [host_spec(n, kind, rng) for n, kind in enumerate(_kinds(count, rng))]


# --------------------------------------------------------------------------- step 1: the probe

def _csv_cell(field: str, index: int, card: Card, driver: str, host: str) -> str:
    uuid = hashlib.sha1(f"{host}/{index}".encode()).hexdigest()
    return {"index": str(index), "name": card.name, "memory.total": str(card.memory_mib), "driver_version": driver,
            "uuid": f"GPU-{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:32]}",
            "pci.bus_id": f"00000000:{index + 1:02X}:00.0", "compute_cap": card.compute_cap,
            "mig.mode.current": card.mig}[field]


def fake_nvidia_smi(spec: HostSpec) -> Callable[[list[str]], tuple[int, str, str]]:
    """A runner (``nvidia_smi.collect``'s ``run``) that answers like the host's ``nvidia-smi --query-gpu``."""
    def run(argv: list[str]) -> tuple[int, str, str]:
        if spec.kind == FAIL_MISMATCH:
            return 18, "Failed to initialize NVML: Driver/library version mismatch\n", ""
        fields = argv[1].split("=", 1)[1].split(",") if len(argv) > 1 else []
        if "compute_cap" in fields and int(spec.driver.split(".")[0]) < 510:
            return 2, 'Field "compute_cap" is not a valid field to query.\n', ""
        rows = [", ".join(_csv_cell(f, i, card, spec.driver, spec.name) for f in fields)
                for i, card in enumerate(spec.cards)]
        return 0, "\n".join(rows) + "\n", ""
    return run


def probe(spec: HostSpec) -> dict[str, Any]:
    """The ``nvidia_gpu_facts`` result of one host (no nvidia-smi and no NVIDIA device on CPU hosts)."""
    smi = None if not spec.cards else "/usr/bin/nvidia-smi"
    return nvidia_smi.collect(fake_nvidia_smi(spec), smi, lambda: False).as_dict()


def probe_all(specs: Sequence[HostSpec]) -> list[dict[str, Any]]:
    """Step 1 over the fleet."""
    return [probe(spec) for spec in specs]


# --------------------------------------------------------------------------- step 2: the plan

def nvidia_check_defaults() -> dict[str, Any]:
    """``roles/nvidia_check/defaults/main.yml``: the tier table, quirks and CPU flags the role uses."""
    return yaml.safe_load((ROOT / "roles" / "nvidia_check" / "defaults" / "main.yml").read_text(encoding="utf-8"))


def plan(spec: HostSpec, facts: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``sdfleet_gpu`` of one host, as nvidia_check's "Publish sdfleet_gpu" task computes it."""
    gpu = gpu_plan(dict(facts), defaults["nvidia_check_tier_table"], defaults["nvidia_check_quirks"],
                   attention=defaults["nvidia_check_attention"],
                   pin="cpu" if spec.kind == CPU_PINNED else defaults["nvidia_check_tier"],
                   allow_cpu_fallback=spec.kind == CPU_FALLBACK, cpu_flags=defaults["nvidia_check_cpu_flags"])
    return torch_plan(gpu, spec.webui_version, defaults["nvidia_check_torch_build"])


def plan_all(specs: Sequence[HostSpec], facts: Sequence[Mapping[str, Any]],
             defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Step 2 over the fleet."""
    return [plan(spec, f, defaults) for spec, f in zip(specs, facts)]


# --------------------------------------------------------------------------- step 3: the instances

def instances(spec: HostSpec, gpu: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``sdfleet_instances`` of one host (webui_service's plan, then its published summary); [] when refused."""
    if gpu.get("state") not in USABLE:
        return []
    door = spec.front_door
    plan_ = webui_plan(gpu, base_port=27860 if door else 7860, public_base_port=7860, single_instance=False,
                       data_root="/var/lib/sd-webui", listen=not door, listen_address="127.0.0.1" if door else "",
                       share=False, auth_path="/etc/sd-webui/gradio-auth", api=True,
                       models_dir="/opt/sd-webui/models", embeddings_dir="/opt/sd-webui/embeddings",
                       freeze_settings=False, insecure_extension_access=False, theme="", extra_args=[],
                       exposed=True, skip_install=True, webui_version=spec.webui_version)
    return webui_summary(plan_, spec.name, "https" if door else "http")


def instances_all(specs: Sequence[HostSpec], gpus: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
    """Step 3 over the fleet."""
    return [instances(spec, gpu) for spec, gpu in zip(specs, gpus)]


# --------------------------------------------------------------------------- the other facts of a run

def stage_remediation() -> dict[str, str]:
    """``playbooks/steps/remediation.yml``: the generic remediation per stage."""
    text = (ROOT / "playbooks" / "steps" / "remediation.yml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)["__sdfleet_remediation"])


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _webui_fact(spec: HostSpec) -> dict[str, Any]:
    source = (f"https://ci:{TOKEN}@git.example.org/sd/stable-diffusion-webui.git" if spec.name.endswith("7")
              else f"http://{MIRROR}:8080/git/stable-diffusion-webui.git")
    return {"dir": "/opt/sd-webui", "version": spec.webui_version, "commit": _sha(spec.webui_version)[:40],
            "source": source, "venv": "/opt/sd-webui/venv", "python": "/usr/bin/python3.10", "installed": True,
            "extensions": [{"name": "sd-dynamic-prompts", "version": "v2.17.1", "commit": _sha("dp")[:40],
                            "state": "present"},
                           {"name": "sd-webui-controlnet", "version": "1.1.455", "commit": _sha("cn")[:40],
                            "state": "present" if spec.name[-1] in "02468" else "disabled"}]}


def _models_fact(spec: HostSpec) -> list[dict[str, Any]]:
    names = [("sd_xl_base_1.0", "checkpoint"), ("v1-5-pruned-emaonly", "checkpoint"), ("sdxl_vae", "vae"),
             ("detail-tweaker", "lora")][: 2 + len(spec.cards) % 3]
    dirs = {"checkpoint": "Stable-diffusion", "vae": "VAE", "lora": "Lora"}
    return [{"name": name, "kind": kind, "path": f"/opt/sd-webui/models/{dirs[kind]}/{name}.safetensors",
             "sha256": _sha(name), "short_hash": _sha(name)[:10], "legacy_hash": _sha(name)[:8], "set_aside": []}
            for name, kind in names]


def _failure(spec: HostSpec, gpu: Mapping[str, Any], remediation: Mapping[str, str]) -> Optional[dict[str, str]]:
    """``sdfleet_failure`` as steps/record_failure.yml keeps it, for the hosts that fail."""
    rerun = f"Then rerun this host only: ansible-playbook site.yml --limit {spec.name}"
    if spec.kind == FAIL_SERVICE:
        return {"stage": "service", "task": "Wait until every instance answers",
                "message": "instance-0 did not answer http://127.0.0.1:7860/internal/ping within 600 s: "
                           "torch.cuda.OutOfMemoryError: CUDA out of memory (journalctl -u sd-webui@0)",
                "remediation": f"{remediation['service']}\n{rerun}"}
    if gpu.get("state") not in USABLE:
        return {"stage": "gpu", "task": "Refuse a host the webui cannot run on",
                "message": f"nvidia_check: {gpu['state']}: {gpu['message']}",
                "remediation": f"{gpu.get('message') or remediation['gpu']}\n{rerun}"}
    return None


def host_facts(spec: HostSpec, gpu: Mapping[str, Any], insts: Sequence[Mapping[str, Any]],
               remediation: Mapping[str, str]) -> dict[str, Any]:
    """The facts the stages leave on one GPU host (what the report reads from hostvars)."""
    facts: dict[str, Any] = {"__sdfleet_in_run": True}
    if spec.kind == NOT_REACHED:
        return facts
    facts["sdfleet_gpu"] = gpu
    failure = _failure(spec, gpu, remediation)
    if failure and failure["stage"] == "gpu":
        return dict(facts, sdfleet_failure=failure)
    facts.update({
        "__sdfleet_mirrors_up": [f"http://{MIRROR}:8080"] if spec.mirror_serving else [],
        "__sdfleet_mirrors_missed": [] if spec.mirror_serving else [MIRROR], "sdfleet_webui": _webui_fact(spec),
        "sdfleet_models": _models_fact(spec), "sdfleet_instances": list(insts), "sdfleet_public_urls": [],
        "sdfleet_health": {i["index"]: ("no answer" if failure else ("HTTP 502" if spec.name.endswith("13") and
                                                                     i["index"] == 0 else "healthy"))
                           for i in insts},
    })
    if spec.front_door:
        facts["sdfleet_front_door"] = {"enabled": True, "scheme": "https", "certificate": "self-signed",
                                       "fingerprint_sha256": ":".join(_sha(spec.name)[i:i + 2].upper()
                                                                      for i in range(0, 64, 2)),
                                       "not_after": "20290305120000Z"}
    if failure:
        facts["sdfleet_failure"] = failure
    return facts


def mirror_facts() -> dict[str, Any]:
    """The facts the fleet mirror leaves (fleet_mirror's sdfleet_mirror)."""
    return {"__sdfleet_in_run": True, "sdfleet_mirror": {
        "host": MIRROR, "port": 8080,
        "git": ["stable-diffusion-webui.git", "stable-diffusion-webui-assets.git", "stable-diffusion-stability-ai.git",
                "generative-models.git", "k-diffusion.git", "BLIP.git", "sd-dynamic-prompts.git",
                "sd-webui-controlnet.git"],
        "models": ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors", "sdxl_vae.safetensors",
                   "detail-tweaker.safetensors"],
        "url_packages": ["/packages/clip-0.1.0.zip", "/packages/open_clip-2.20.0.zip"]}}


def fleet_hostvars(specs: Sequence[HostSpec], gpus: Sequence[Mapping[str, Any]],
                   insts: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Every host's facts, the mirror's included: the hostvars of the report task."""
    remediation = stage_remediation()
    out = {spec.name: host_facts(spec, gpu, i, remediation) for spec, gpu, i in zip(specs, gpus, insts)}
    out[MIRROR] = mirror_facts()
    return out


def fleet_groups(specs: Sequence[HostSpec]) -> dict[str, list[str]]:
    """The inventory's groups that the report and the mirror map read."""
    return {"webui_hosts": [spec.name for spec in specs], "sdfleet_mirror": [MIRROR]}


# --------------------------------------------------------------------------- step 5: Ansible's hostvars

def ansible_hostvars(hostvars: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]]) -> Any:
    """Ansible's ``HostVars`` over an in-memory inventory whose hosts carry ``hostvars`` as set_fact facts."""
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.hostvars import HostVars
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=["localhost,"])  # the report play has localhost too
    for group, hosts in groups.items():
        inventory.add_group(group)
        for host in hosts:
            inventory.add_host(host, group=group)
    variables = VariableManager(loader=loader, inventory=inventory)
    for host, facts in hostvars.items():
        variables.set_nonpersistent_facts(host, dict(facts))
    return HostVars(inventory=inventory, variable_manager=variables, loader=loader)


# --------------------------------------------------------------------------- step 6: the templates

def render(template: str, report: Mapping[str, Any]) -> str:
    """``templates/<template>`` rendered as write_report.yml's template task does (Ansible's Templar)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    source = trust_as_template((ROOT / "templates" / template).read_text(encoding="utf-8"))
    templar = Templar(loader=DataLoader(), variables={"ansible_managed": ANSIBLE_MANAGED,
                                                      "__sdfleet_report": report})
    out = templar.template(source, escape_backslashes=False, overrides={"trim_blocks": True, "lstrip_blocks": False})
    return str(out or "")


# --------------------------------------------------------------------------- measuring

def measure(key: str, label: str, func: Callable[[], T], repeat: int) -> tuple[T, Step]:
    """Run ``func`` ``repeat`` times (best wall time, tracemalloc off), then once traced (peak allocation)."""
    best, result = float("inf"), None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    try:
        func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return result, Step(key, label, best, peak)  # type: ignore[return-value]


def max_rss_bytes() -> int:
    """The process's peak resident set (ru_maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def run_bench(count: int = 500, seed: int = 17, repeat: int = 3,
              echo: Callable[[str], None] = lambda line: None) -> BenchResult:
    """Simulate a fleet of ``count`` GPU hosts and measure every step; ``echo`` gets each step's line."""
    started = time.perf_counter()
    specs, defaults = fleet_specs(count, seed), nvidia_check_defaults()
    steps: list[Step] = []

    def step(key: str, label: str, func: Callable[[], T]) -> T:
        result, measured = measure(key, label, func, repeat)
        steps.append(measured)
        echo(measured.line())
        return result

    n = f"{count} hosts"
    facts = step("probe", f"probe {n} (nvidia-smi CSV -> nvidia_gpu_facts)", lambda: probe_all(specs))
    gpus = step("plan", f"plan {n} (gpu_plan | torch_plan)", lambda: plan_all(specs, facts, defaults))
    insts = step("instances", f"instances {n} (webui_plan | webui_summary)", lambda: instances_all(specs, gpus))
    hostvars, groups = fleet_hostvars(specs, gpus, insts), fleet_groups(specs)
    indexes = step("indexes", f"torch_mirror_indexes {n}",
                   lambda: torch_mirror_indexes(groups["webui_hosts"], hostvars, TORCH_CUDA_URL, TORCH_CPU_URL))
    report = step("report", f"fleet_report_data {n} (dict hostvars)", lambda: fleet_report_data(hostvars, groups, []))
    real = ansible_hostvars(hostvars, groups)
    via_ansible = step("report_ansible", f"fleet_report_data {n} (Ansible HostVars)", lambda: fleet_report_data(real, groups, []))
    empty = {host: {} for host in [*groups["webui_hosts"], MIRROR]}
    alone = step("report_alone", f"fleet_report_data {n} (report alone: stored rows, empty hostvars)",
                 lambda: fleet_report_data(empty, groups, report["fresh"]))
    markdown = step("render_md", f"render fleet_report.md.j2 {n}", lambda: render("fleet_report.md.j2", report))
    html = step("render_html", f"render fleet_report.html.j2 {n}", lambda: render("fleet_report.html.j2", report))
    same = via_ansible == report and [dict(h, earlier=False) for h in alone["hosts"]] == report["hosts"]
    return BenchResult(hosts=specs, steps=steps, report=report, markdown=markdown, html=html,
                       instances=sum(len(h["instances"]) for h in report["hosts"] if h["status"] == "ok"),
                       mirror_indexes=indexes, hostvars_same=same,
                       max_rss_bytes=max_rss_bytes(), wall_seconds=time.perf_counter() - started)


def summary(result: BenchResult) -> str:
    """The one-line summary (starts with ``sim:``)."""
    by = {s.key: s.seconds for s in result.steps}
    ok = sum(1 for h in result.report["hosts"] if h["status"] == "ok")
    return (f"sim: {len(result.hosts)} hosts + 1 mirror, {ok} ok, {len(result.failed)} failed, "
            f"{len(result.not_reached)} not reached, {result.instances} instances, torch builds "
            f"{','.join(result.mirror_indexes)}; plan {by['plan']:.3f} s, "
            f"report data {by['report']:.3f} s (Ansible HostVars {by['report_ansible']:.3f} s, "
            f"alone {by['report_alone']:.3f} s), render md+html {by['render_md'] + by['render_html']:.3f} s "
            f"({len(result.markdown) / 1024:.0f}+{len(result.html) / 1024:.0f} KiB); "
            f"all steps {sum(s.seconds for s in result.steps):.3f} s (bench wall {result.wall_seconds:.1f} s); "
            f"max step peak {max(s.peak_bytes for s in result.steps) / MIB:.1f} MiB; "
            f"max RSS {result.max_rss_bytes / MIB:.1f} MiB")


_LAST: Optional[BenchResult] = None


def last_result() -> BenchResult:
    """The result of the last :func:`main` run in this process."""
    if _LAST is None:
        raise RuntimeError("bench_sim.main has not run in this process")
    return _LAST


def last_markdown() -> str:
    """The Markdown report the last :func:`main` run rendered."""
    return last_result().markdown


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=500, help="GPU hosts in the simulated fleet (default 500)")
    parser.add_argument("--seed", type=int, default=17, help="seed of the simulated fleet (default 17)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per step, best kept (default 3)")
    args = parser.parse_args(argv)
    if args.hosts < 1 or args.repeat < 1:
        parser.error("--hosts and --repeat must be at least 1")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the bench and print its lines; 0 when the report lists every host."""
    global _LAST
    args = parse_args(argv)
    result = run_bench(args.hosts, args.seed, args.repeat, echo=lambda line: print(line, flush=True))
    _LAST = result
    names = [h["name"] for h in result.report["hosts"]]
    if names != sorted(h.name for h in result.hosts) or TOKEN in result.markdown + result.html:
        print("sim: FAILED: the report does not list every host once, or shows a credential", file=sys.stderr)
        return 1
    if not result.hostvars_same:
        print("note: the report data differs between dict hostvars, Ansible HostVars and the report alone")
    print(f"process: max RSS {result.max_rss_bytes / MIB:.1f} MiB (ru_maxrss)")
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
