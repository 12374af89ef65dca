"""preflight filters: the instance count (the service's rule), the ports, disk, RAM and install-dir refusals."""
from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml
from refusal_catalog import refused

from ansible_collections.sdfleet.toolkit.plugins.filter import preflight as mod
from ansible_collections.sdfleet.toolkit.plugins.filter import webui_args

GIB = 1073741824
ROOT = pathlib.Path(__file__).resolve().parents[4]
ROLE = ROOT / "roles" / "preflight"


def gpus(n: int, tier: str = "full") -> dict[str, Any]:
    """An nvidia_check plan (sdfleet_gpu) with ``n`` GPUs."""
    return {"state": "ok", "tier": tier,
            "gpus": [{"index": i, "uuid": f"GPU-{i:08d}", "name": "NVIDIA GeForce RTX 3090", "tier": tier,
                      "flags": ["--xformers"]} for i in range(n)]}


def free(gib: float = 500, present: tuple[int, ...] = ()) -> dict[str, Any]:
    """A disk probe result: ``gib`` free at /opt, the models of ``present`` in place."""
    lines = ["parent\t/opt", f"free\t{int(gib * GIB)}"] + [f"model\t{i}" for i in present]
    return {"rc": 0, "stdout_lines": lines, "stderr": ""}


def held(port: int, user: str = "nobody", unit: str = "-") -> str:
    return f"{port}\theld\t65534\t{user}\t812\tpython3\t{unit}"


BASE: dict[str, Any] = {
    "gpu": None, "single_instance": False, "instances": 0, "port": 7860, "backend_port": 27860,
    "front_door": False, "mirror_port": 0, "install_dir": "/opt/sd-webui", "min_free_disk_gb": 20,
    "models": [], "models_dir": "/opt/sd-webui/models", "embeddings_dir": "/opt/sd-webui/embeddings",
    "min_ram_mb": 7680, "recommended_ram_mb": 15360, "service_user": "sdwebui", "service_unit_prefix": "sd-webui",
}
PROBES: dict[str, Any] = {"disk": free(), "ports": [], "ram_mb": 64000, "swap_mb": 8192}


def problems(probes: dict[str, Any] | None = None, **settings: Any) -> list[str]:
    return mod.preflight_problems(BASE | settings, PROBES | (probes or {}))


def plan(**settings: Any) -> dict[str, Any]:
    return mod.preflight_plan(BASE | settings)


# --- clean hosts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings,probes", [
    ({}, {}),
    ({"gpu": gpus(4)}, {"ports": [f"{p}\tfree" for p in range(7860, 7864)]}),
    # our own service (its user, its unit) and, behind the front door, nginx on the public ports
    ({"gpu": gpus(2)}, {"ports": [held(7860, "sdwebui"), held(7861, "root", "sd-webui@1.service")]}),
    ({"gpu": gpus(2), "front_door": True}, {"ports": [held(7860, "www-data", "nginx.service"), held(27861, "sdwebui")]}),
    # the mirror's port clear of 7860..7863 and 27860..27863
    ({"gpu": gpus(4), "front_door": True, "mirror_port": 8080}, {}),
    # 20 GiB floor + a 2 GiB model on 22.5 GiB; a 300 GiB model already in place counts nothing
    ({"models": [{"name": "sd15", "kind": "checkpoint", "url": "https://x/sd15.safetensors", "size": 2 * GIB},
                 {"name": "big", "kind": "checkpoint", "url": "https://x/big.safetensors", "size": 300 * GIB}]},
     {"disk": free(22.5, present=(1,))}),
    # 2 x 7680 MiB on 16 GiB
    ({"gpu": gpus(2)}, {"ram_mb": 15600}),
    ({"gpu": gpus(8), "single_instance": True}, {"ram_mb": 7700}),
    ({"install_dir": "/srv/sd_webui-1.10/x"}, {}),
])
def test_sound_hosts_pass(settings, probes):
    assert problems(probes, **settings) == []


# --- the instance count: the service's own rule -----------------------------------------------------------

@pytest.mark.parametrize("settings,count,source", [
    ({}, 1, "unknown"),
    ({"gpu": gpus(1)}, 1, "gpu"),
    ({"gpu": gpus(3)}, 3, "gpu"),
    ({"gpu": gpus(8)}, 8, "gpu"),
    ({"gpu": gpus(8), "single_instance": True}, 1, "gpu"),
    ({"gpu": gpus(8), "single_instance": "true"}, 1, "gpu"),
    ({"gpu": {"state": "cpu", "tier": "cpu", "gpus": []}}, 1, "gpu"),
    ({"gpu": gpus(2), "instances": 5}, 5, "override"),
])
def test_instance_count_follows_the_gpu_plan(settings, count, source):
    result = plan(**settings)
    assert (result["instances"], result["instances_from"]) == (count, source)
    assert result["public_ports"] == list(range(7860, 7860 + count))


@pytest.mark.parametrize("n,single", [(1, False), (4, False), (4, True)])
def test_instance_count_is_the_webui_instances_count(n, single):
    expected = len(webui_args.webui_instances(gpus(n), base_port=7860, single_instance=single))
    assert plan(gpu=gpus(n), single_instance=single)["instances"] == expected


def test_instance_count_changes_with_the_service_rule(monkeypatch):
    # One owner: a change to webui_instances reaches preflight's ports.
    monkeypatch.setattr(mod, "webui_instances", lambda *a, **k: [{}] * 3)
    assert plan(gpu=gpus(1))["ports"] == [7860, 7861, 7862]


def test_backend_ports_are_probed_only_behind_the_front_door():
    assert plan(gpu=gpus(2))["ports"] == [7860, 7861]
    assert plan(gpu=gpus(2), front_door=True)["ports"] == [7860, 7861, 27860, 27861]


def test_unknown_gpu_facts_warn():
    [warning] = mod.preflight_warnings(BASE, PROBES)
    assert "sdfleet_gpu is not known" in warning and "preflight_instances" in warning
    assert mod.preflight_warnings(BASE | {"gpu": gpus(2)}, PROBES) == []


# --- ports of every instance -------------------------------------------------------------------------------

@pytest.mark.parametrize("n,port", [(2, 7861), (4, 7861), (4, 7862), (4, 7863), (8, 7867)])
def test_port_of_instance_n_held_is_refused(n, port):
    msg = refused("preflight", "sdfleet_port", f"{n} GPUs, port {port} held by nobody",
                  problems({"ports": [held(port)]}, gpu=gpus(n)),
                  expect=[f"port {port} (instance {port - 7860})", "held by user nobody", "(preflight_port) = 7860"])
    assert "not by sdwebui" in msg


def test_port_past_the_instance_count_is_not_probed_nor_refused():
    assert plan(gpu=gpus(2))["ports"] == [7860, 7861]
    assert problems({"ports": [held(7862)]}, gpu=gpus(2)) == []


@pytest.mark.parametrize("port", [27860, 27861])
def test_backend_port_held_is_refused(port):
    refused("preflight", "sdfleet_backend_port", f"front door, 2 GPUs, loopback port {port} held",
            problems({"ports": [held(port)]}, gpu=gpus(2), front_door=True),
            expect=[f"port {port} (instance {port - 27860}, loopback behind the front door)",
                    "(preflight_backend_port) = 27860"])


def test_nginx_on_a_public_port_is_foreign_without_a_front_door():
    refused("preflight", "sdfleet_port", "no front door, port 7861 held by nginx.service",
            problems({"ports": [held(7861, "www-data", "nginx.service")]}, gpu=gpus(2)), expect=["nginx.service"])


def test_missing_ss_is_refused():
    refused("preflight", "sdfleet_port", "ss missing", problems({"ports": ["no-ss"]}), expect=["iproute2"])


# --- the fleet mirror's port -------------------------------------------------------------------------------

@pytest.mark.parametrize("n,front_door,mirror,variable,instance", [
    (1, False, 7860, "sdfleet_port", 0),
    (2, False, 7861, "sdfleet_port", 1),
    (4, False, 7863, "sdfleet_port", 3),
    (2, True, 7861, "sdfleet_port", 1),
    (2, True, 27860, "sdfleet_backend_port", 0),
    (4, True, 27862, "sdfleet_backend_port", 2),
])
def test_instance_port_on_the_mirror_port_is_refused(n, front_door, mirror, variable, instance):
    [msg] = problems(gpu=gpus(n), front_door=front_door, mirror_port=mirror)
    refused("preflight", "sdfleet_mirror_port",
            f"{n} GPUs, front door {front_door}, mirror port {mirror} ({variable})", msg,
            expect=[variable, f"instance {instance} is {mirror}", "(preflight_mirror_port) = " + str(mirror)])


def test_backend_range_is_free_of_the_mirror_without_a_front_door():
    # Without a front door nothing listens on the loopback ports.
    assert problems(gpu=gpus(2), mirror_port=27861) == []


# --- the install dir (sdfleet_install_dir) -------------------------------------------------------------------

@pytest.mark.parametrize("path,expect", [
    ("/opt/sd webui", "contains a space"),
    ("/opt/sd-webui ", "contains a space"),
    ("opt/sd-webui", "not an absolute path"),
    ("./sd-webui", "not an absolute path"),
    ("~/sd-webui", "not an absolute path"),
    ("", "not an absolute path"),
    ("/opt/sd-wébui", 'characters other than printable ASCII ("é")'),
    ("/srv/模型/webui", "characters other than printable ASCII"),
    ("/opt/sd\twebui", "characters other than printable ASCII ('\\t')"),
    (5, "not a path"),
    (None, "not a path"),
    (["/opt/sd-webui"], "not a path"),
])
def test_bad_install_dir_is_refused(path, expect):
    hits = [p for p in problems(install_dir=path) if expect in p]
    assert len(hits) == 1, problems(install_dir=path)
    refused("preflight", "sdfleet_install_dir", path, hits[0], expect=[expect, "(preflight_install_dir)"])


def test_install_dir_with_space_and_non_ascii_lists_both():
    found = problems(install_dir="/opt/sd wébui")
    assert len(found) == 2 and "a space" in found[0] and "printable ASCII" in found[1]


def test_unmeasurable_disk_is_refused():
    refused("preflight", "sdfleet_install_dir", "df fails",
            problems({"disk": {"rc": 1, "stdout_lines": [], "stderr": "df: /opt: Permission denied"}}),
            expect=["could not measure", "Permission denied"])


# --- free disk, with the models not in place yet -------------------------------------------------------------

def model(name: str, size: Any, **more: Any) -> dict[str, Any]:
    return {"name": name, "kind": "checkpoint", "url": f"https://example.org/{name}.safetensors", "sha256": "0" * 64,
            "size": size} | more


@pytest.mark.parametrize("case,models,disk,named,unnamed,needed", [
    ("one 6.5 GiB model on 25 GiB", [model("sdxl", int(6.5 * GIB))], free(25), ["sdxl 6.5 GiB"], [], "26.5 GiB"),
    ("two models, 21 GiB free", [model("sd15", 2 * GIB), model("vae", GIB, kind="vae")], free(21),
     ["sd15 2.0 GiB", "vae 1.0 GiB"], [], "23.0 GiB"),
    ("a present model is not counted", [model("have", 100 * GIB), model("need", 4 * GIB)], free(22, present=(0,)),
     ["need 4.0 GiB"], ["have"], "24.0 GiB"),
    ("an embedding and a path model", [model("emb", GIB, kind="embedding"),
                                       model("ctl", 3 * GIB, kind=None, path="/srv/controlnet")], free(23),
     ["emb 1.0 GiB", "ctl 3.0 GiB"], [], "24.0 GiB"),
    ("a copied shared file counts, a linked one does not",
     [model("copied", 2 * GIB, url=None, shared_path="/nfs/a.safetensors"),
      model("linked", 50 * GIB, url=None, shared_path="/nfs/b.safetensors", link=True)], free(21),
     ["copied 2.0 GiB"], ["linked"], "22.0 GiB"),
    ("an absent model is not counted", [model("gone", 90 * GIB, state="absent"), model("sd15", "2147483648")],
     free(21), ["sd15 2.0 GiB"], ["gone"], "22.0 GiB"),
    ("a model list even on an existing install dir", [model("sd15", 2 * GIB)], free(21.9), ["sd15 2.0 GiB"], [],
     "22.0 GiB"),
    ("seven models", [model(f"m{i}", GIB) for i in range(7)], free(21), ["m0 1.0 GiB", "and 1 more"], ["m6"],
     "27.0 GiB"),
])
def test_disk_short_by_the_models_is_refused(case, models, disk, named, unnamed, needed):
    msg = refused("preflight", "sdfleet_model_list", case, problems({"disk": disk}, models=models),
                  expect=["sdfleet_min_free_disk_gb (preflight_min_free_disk_gb) = 20 +", "not in place yet",
                          f"{needed} needed", "(preflight_models)"] + named)
    for name in unnamed:
        assert name not in msg


def test_model_destinations_are_probed():
    models = [model("sd15", GIB), model("emb", GIB, kind="embedding", url="https://x/e.pt"), model("nosize", None)]
    assert [(m["index"], m["dest"]) for m in plan(models=models)["models"]] == [
        (0, "/opt/sd-webui/models/Stable-diffusion/sd15.safetensors"), (1, "/opt/sd-webui/embeddings/e.pt")]


@pytest.mark.parametrize("floor,gib", [(20, 19.9), (100, 50)])
def test_disk_short_of_the_floor_is_refused(floor, gib):
    refused("preflight", "sdfleet_min_free_disk_gb", f"floor {floor} GiB, {gib} GiB free",
            problems({"disk": free(gib)}, min_free_disk_gb=floor),
            expect=[f"= {floor}: only {gib:.1f} GiB free at /opt (holding /opt/sd-webui)", "sdfleet_install_dir"])


# --- RAM per instance ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,ram,floor", [(2, 15000, 15360), (4, 30000, 30720), (8, 60000, 61440)])
def test_ram_short_per_instance_is_refused(n, ram, floor):
    refused("preflight", "sdfleet_min_ram_mb", f"{n} GPUs, {ram} MiB RAM", problems({"ram_mb": ram}, gpu=gpus(n)),
            expect=[f"ansible_memtotal_mb = {ram}", f"7680 MiB per instance x {n} instances", f"= {floor} MiB",
                    "sdfleet_single_instance (preflight_single_instance): true"])


def test_ram_short_for_one_instance_is_refused():
    refused("preflight", "sdfleet_min_ram_mb", "1 instance, 4000 MiB RAM", problems({"ram_mb": 4000}),
            expect=["ansible_memtotal_mb = 4000", "= 7680 MiB (one instance)"])


def test_ram_recommendation_is_per_instance():
    warnings = mod.preflight_warnings(BASE | {"gpu": gpus(2)}, PROBES | {"ram_mb": 20000, "swap_mb": 0})
    assert "below the recommended 30720 MiB (15360 MiB per instance x 2)" in warnings[0]
    assert warnings[1].startswith("ansible_swaptotal_mb = 0")


# --- wrong types of the new variables ----------------------------------------------------------------------

@pytest.mark.parametrize("variable,key,value,expect", [
    ("sdfleet_single_instance", "single_instance", "maybe", "not a boolean"),
    ("sdfleet_single_instance", "single_instance", 2, "not a boolean"),
    ("sdfleet_single_instance", "single_instance", [True], "not a boolean"),
    ("preflight_instances", "instances", -1, "not a whole number of instances"),
    ("preflight_instances", "instances", "two", "not a whole number of instances"),
    ("sdfleet_min_ram_mb", "min_ram_mb", "8G", "not a whole number of MiB"),
    ("sdfleet_min_ram_mb", "min_ram_mb", -1, "not a whole number of MiB"),
    ("sdfleet_min_ram_mb", "min_ram_mb", True, "not a whole number of MiB"),
    ("sdfleet_min_free_disk_gb", "min_free_disk_gb", "20GB", "not a whole number of GiB"),
    ("sdfleet_min_free_disk_gb", "min_free_disk_gb", 1.5, "not a whole number of GiB"),
    ("sdfleet_mirror_port", "mirror_port", "http", "not a port number"),
    ("sdfleet_mirror_port", "mirror_port", -1, "not a port number"),
    ("sdfleet_mirror_port", "mirror_port", 70000, "not a port number"),
    ("sdfleet_mirror_port", "mirror_port", None, "not a port number"),
    ("sdfleet_model_list", "models", "sd15.safetensors", "not a list of models"),
    ("sdfleet_model_list", "models", {"name": "sd15"}, "not a list of models"),
])
def test_wrong_type_is_refused(variable, key, value, expect):
    refused("preflight", variable, value, problems(**{key: value}), expect=[expect])


@pytest.mark.parametrize("size", ["2GB", "2 GiB", -5, 1.5, True, [1], {"bytes": 1}])
def test_model_size_of_the_wrong_type_is_refused(size):
    refused("preflight", "sdfleet_model_list[0].size", {"size": size}, problems(models=[model("sd15", size)]),
            expect=["(preflight_models[0].size)", "(name 'sd15')", "not a whole number of bytes", "stat -c %s"])


def test_model_size_may_be_left_out_or_given_as_digits():
    assert problems(models=[model("a", None), {"name": "b", "kind": "vae", "url": "https://x/b.pt"},
                            model("c", "123"), model("d", 2.0 * GIB)]) == []


# --- the role wires these filters ---------------------------------------------------------------------------

def test_role_passes_every_setting_the_filter_reads():
    variables = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))
    assert set(variables["__preflight_settings"]) == set(BASE)
    assert "sdfleet.toolkit.preflight_problems" in variables["__preflight_host_problems"]
    assert set(variables["__preflight_probes"]) == set(PROBES)


def test_role_defaults_match_the_filter_defaults_used_here():
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    for key in ("install_dir", "min_free_disk_gb", "min_ram_mb", "recommended_ram_mb", "port", "backend_port",
                "mirror_port", "single_instance", "instances", "models", "service_user", "service_unit_prefix"):
        assert defaults[f"preflight_{key}"] == BASE[key], key


def test_filter_module_exports():
    assert set(mod.FilterModule().filters()) == {"preflight_plan", "preflight_problems", "preflight_warnings"}
