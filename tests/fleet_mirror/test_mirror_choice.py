"""Several fleet mirrors (issue 17): each GPU host asks its own rack's mirror first, falls back to another one, and
takes its indexes from the first that answers (playbooks/mirror.yml, second play, with the fleet contract).

Run on the controller with ``--limit webui_hosts``, so the mirror hosts' own play has no host and the mirrors are
two plain HTTP servers on loopback: one serves ``/simple/``, the other port is closed (a mirror host that is down).
"""
from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator


ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = pathlib.Path(sys.executable).with_name("ansible-playbook")

SHOW = """
- name: What each GPU host resolved
  hosts: webui_hosts
  gather_facts: false
  roles: [sdfleet]
  tasks:
    - name: Write it
      ansible.builtin.copy:
        content: "{{ {'order': sdfleet_mirror_urls, 'up': __sdfleet_mirrors_up, 'missed': __sdfleet_mirrors_missed,
                      'pip': webui_repo_pip_index_url, 'cpu': webui_repo_torch_index_url_cpu,
                      'git': webui_repo_sources, 'models': webui_models_mirror_urls,
                      'no_proxy': webui_repo_no_proxy} | to_json }}"
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0644"
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _mirror(root: pathlib.Path) -> Iterator[int]:
    """A stand-in mirror host on loopback that answers ``/simple/`` (all the probe asks)."""
    (root / "simple").mkdir(parents=True)
    (root / "simple" / "index.html").write_text("<html></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run(tmp_path: pathlib.Path, ports: dict[str, int]) -> dict[str, dict]:
    mirror = {"ansible_connection": "local", "sdfleet_mirror_address": "127.0.0.1"}
    local = {"ansible_connection": "local"}
    fleet = {"ansible_python_interpreter": sys.executable, "sdfleet_pip_index_url": "http://pypi.lan/simple/"}
    inv = {"all": {"vars": fleet, "children": {
                       "webui_hosts": {"hosts": {"gpu-a": local, "gpu-b": local}},
                       "sdfleet_mirror": {"hosts": {m: dict(mirror, sdfleet_mirror_port=p) for m, p in ports.items()}},
                       "rack_a": {"hosts": {"gpu-a": {}, "m-a": {}}},
                       "rack_b": {"hosts": {"m-b": {}, "gpu-b": {}}}}}}
    (tmp_path / "hosts.yml").write_text(json.dumps(inv))
    (tmp_path / "show.yml").write_text(SHOW)
    (tmp_path / "run.yml").write_text(f"- ansible.builtin.import_playbook: {ROOT / 'playbooks' / 'mirror.yml'}\n"
                                      f"- ansible.builtin.import_playbook: {tmp_path / 'show.yml'}\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "run.yml"),
                           "--limit", "webui_hosts", "-e", f"out_dir={tmp_path}"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return {h: json.loads((tmp_path / f"{h}.json").read_text()) for h in ("gpu-a", "gpu-b")}


def test_each_host_takes_its_racks_mirror_when_both_serve(tmp_path):
    with _mirror(tmp_path / "a") as port_a, _mirror(tmp_path / "b") as port_b:
        got = _run(tmp_path, {"m-a": port_a, "m-b": port_b})
    a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    assert got["gpu-a"]["order"] == [a, b] and got["gpu-b"]["order"] == [b, a]
    assert got["gpu-a"]["pip"] == f"{a}/simple/" and got["gpu-b"]["pip"] == f"{b}/simple/"
    assert got["gpu-b"]["cpu"] == f"{b}/torch/cpu/"
    # git and the model files try both mirrors, the host's own first, then upstream
    assert got["gpu-b"]["git"][:2] == [f"{b}/git/stable-diffusion-webui.git", f"{a}/git/stable-diffusion-webui.git"]
    assert got["gpu-b"]["git"][2].startswith("https://github.com/")
    assert got["gpu-b"]["models"] == [f"{b}/files", f"{a}/files"]
    assert got["gpu-a"]["missed"] == [] and got["gpu-b"]["missed"] == []


def test_a_host_whose_racks_mirror_is_down_falls_back_to_the_other(tmp_path):
    dead = _free_port()  # nothing listens there: a mirror host that is down
    with _mirror(tmp_path / "a") as port_a:
        got = _run(tmp_path, {"m-a": port_a, "m-b": dead})
    a = f"http://127.0.0.1:{port_a}"
    b = got["gpu-b"]
    assert b["order"] == [f"http://127.0.0.1:{dead}", a]
    assert b["up"] == [a] and b["missed"] == ["m-b"]
    assert b["pip"] == f"{a}/simple/" and b["models"] == [f"{a}/files"]
    assert b["git"][0] == f"{a}/git/stable-diffusion-webui.git" and b["git"][1].startswith("https://github.com/")
    assert b["no_proxy"] == "127.0.0.1"
    assert got["gpu-a"]["up"] == [a] and got["gpu-a"]["missed"] == ["m-b"]


def test_with_no_mirror_up_the_inventorys_index_and_upstream(tmp_path):
    got = _run(tmp_path, {"m-a": _free_port(), "m-b": _free_port()})
    for host in got.values():
        assert host["up"] == [] and sorted(host["missed"]) == ["m-a", "m-b"]
        assert host["pip"] == "http://pypi.lan/simple/" and host["models"] == []
        assert all(s.startswith("https://github.com/") for s in host["git"]), host["git"]
