"""The fleet report (templates/fleet_report.{html,md}.j2 via playbooks/report.yml) from synthetic hostvars.

The HTML is parsed here and, when Debian's chromium is installed, loaded in real headless Chromium
(dump-dom + screenshot). The lead's test prerequisites should include the `chromium` package.
"""
from __future__ import annotations

import html.parser
import pathlib
import re
import shutil
import subprocess

import pytest

from conftest import HOST_VARS, REPORT_TOKEN

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if pathlib.Path("/usr/bin/chromium").exists() else None)
BAD_VALUES = re.compile(r"\b(None|undefined|null|nan)\b|\{\{|\}\}|\{%")


class _Cells(html.parser.HTMLParser):
    """Collect table cells' text and the hrefs of instance links."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self.links: list[tuple[str, str]] = []
        self._cell: list[str] | None = None
        self._href: str | None = None
        self._link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("td", "th"):
            self._cell = []
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._link_text).strip()))
            self._href = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._href is not None:
            self._link_text.append(data)


def _expected_urls() -> list[str]:
    urls = []
    for hv in HOST_VARS.values():
        if "sdfleet_failure" in hv or "sdfleet_instances" not in hv:
            continue
        public = hv.get("sdfleet_public_urls", [])
        for inst in hv["sdfleet_instances"]:
            urls.append(public[inst["index"]] if len(public) > inst["index"] else inst["url"])
    return sorted(urls)


def _parse(report_dir: pathlib.Path) -> _Cells:
    parser = _Cells()
    parser.feed((report_dir / "fleet-report.html").read_text(encoding="utf-8"))
    return parser


def test_html_links_are_the_instance_urls(report_dir: pathlib.Path) -> None:
    links = _parse(report_dir).links
    assert sorted(href for href, _ in links) == _expected_urls()
    assert all(href == text for href, text in links)


def test_front_door_certificate_fingerprint_is_listed(report_dir: pathlib.Path) -> None:
    """A host behind the front door shows its certificate's SHA-256 fingerprint (users pin self-signed ones);
    a host without one shows no front-door row."""
    fingerprint = HOST_VARS["gpu-dual"]["sdfleet_front_door"]["fingerprint_sha256"]
    html = (report_dir / "fleet-report.html").read_text(encoding="utf-8")
    dual = html.split('id="host-gpu-dual"')[1].split("</section>")[0]
    assert f'<code class="fingerprint">{fingerprint}</code>' in dual and "self-signed certificate" in dual
    small = html.split('id="host-gpu-small"')[1].split("</section>")[0]
    assert "front-door" not in small
    md = (report_dir / "fleet-report.md").read_text(encoding="utf-8")
    assert (f"- front door: nginx, TLS, self-signed certificate, SHA-256 fingerprint `{fingerprint}`, valid until "
            "2029-03-05 12:00 UTC") in md


def test_html_has_no_missing_values(report_dir: pathlib.Path) -> None:
    page = (report_dir / "fleet-report.html").read_text(encoding="utf-8")
    cells = _parse(report_dir).cells
    assert cells, "no table cells rendered"
    assert [c for c in cells if not c] == [], "empty cells"
    assert not BAD_VALUES.search(page.split("-->", 1)[1]), BAD_VALUES.search(page).group(0)


def test_html_lists_gpus_flags_models_and_health(report_dir: pathlib.Path) -> None:
    cells = _parse(report_dir).cells
    for expected in ("NVIDIA GeForce RTX 4060 Ti", "16380", "GeForce GTX 750 Ti", "2002", "lowvram",
                     "--lowvram --upcast-sampling", "7e97e39c14", "80721b00", "healthy", "HTTP 502",
                     "v1.10.1 (82a973c04367)", "http://mirror:8080/git/stable-diffusion-webui.git"):
        assert expected in cells, expected


def test_each_hosts_compute_capabilities_torch_build_and_xformers_are_listed(report_dir: pathlib.Path) -> None:
    cells = _parse(report_dir).cells
    for expected in ("sm_89", "2.7.0+cu128", "0.0.30"):
        assert expected in cells, expected
    md = (report_dir / "fleet-report.md").read_text(encoding="utf-8")
    assert "torch 2.7.0+cu128, xformers 0.0.30" in md
    assert "| 0 | NVIDIA GeForce RTX 4060 Ti | 16380 | sm_89 | full |" in md


def test_failures_listed_with_remediation(report_dir: pathlib.Path) -> None:
    for name in ("fleet-report.html", "fleet-report.md"):
        text = (report_dir / name).read_text(encoding="utf-8")
        assert "gpu-broken" in text and "reboot the host to load the new driver" in text
        # A host with no facts at all (unreachable) is reported, not dropped.
        assert "gpu-gone" in text and "did not finish the run" in text
    assert "2 of 4 hosts serving 3 instances; 2 failed." in (report_dir / "fleet-report.md").read_text()


def test_markdown_has_no_missing_values(report_dir: pathlib.Path) -> None:
    text = (report_dir / "fleet-report.md").read_text(encoding="utf-8")
    body = text.split("-->", 1)[1]
    assert not BAD_VALUES.search(body)
    assert not re.search(r"\|[ \t]*\|", body), "an empty Markdown cell"
    for url in _expected_urls():
        assert f"<{url}>" in text


def test_credentials_in_urls_are_redacted_in_every_format(report_dir: pathlib.Path) -> None:
    """A credentialed webui source and a failure message carrying a credentialed URL: hidden in html and md."""
    for name in ("fleet-report.html", "fleet-report.md"):
        text = (report_dir / name).read_text(encoding="utf-8")
        assert REPORT_TOKEN not in text, f"a credential reached {name}"
        assert "https://***@git.example.org/sd/stable-diffusion-webui.git" in text, name
        assert "https://***@pypi.example.org/simple/" in text, name


def test_both_files_open_with_the_managed_header(report_dir: pathlib.Path) -> None:
    for name in ("fleet-report.html", "fleet-report.md"):
        assert (report_dir / name).read_text(encoding="utf-8").startswith("<!--")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (/usr/bin/chromium); "
                    "add the chromium package to the test prerequisites to run the browser check")
def test_chromium_renders_the_page(report_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    url = (report_dir / "fleet-report.html").resolve().as_uri()
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Cells()
    parser.feed(dom.stdout)
    # What the browser built: the instance links with their targets, the tables and the failures.
    assert sorted(href for href, _ in parser.links) == _expected_urls()
    assert "gpu-broken" in parser.cells and "NVIDIA GeForce RTX 4060 Ti" in parser.cells
    assert not BAD_VALUES.search(dom.stdout.split("<body>", 1)[-1])
    shot = tmp_path / "report.png"
    run = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,2000", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, "blank or missing screenshot"
    keep = pathlib.Path(__file__).resolve().parents[2] / "reports"
    keep.mkdir(exist_ok=True)
    shutil.copy(shot, keep / "test-fleet-report.png")
