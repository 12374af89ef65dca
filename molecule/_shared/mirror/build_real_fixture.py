#!/usr/bin/env python3
"""Build the REAL upstream fixture: what a real AUTOMATIC1111 install fetches, served where GitHub and PyPI would.

    python3 molecule/_shared/mirror/build_real_fixture.py --out build/real-fixture     # or: make real-fixture

From the real trees in ../shared/upstream/ (never copied into the repo) and the locked wheel set
(real_wheels.py, downloaded into a cache outside the clone), it writes:

    git/AUTOMATIC1111/stable-diffusion-webui.git   v1.9.4 -> v1.10.1 -> dev on one history; annotated tags v1.9.4,
                                                   v1.10.1; master = v1.10.1, dev = the dev tree; tag
                                                   sdfleet-test-broken on top of v1.10.1 (webui.py exits at
                                                   start: the update rollback test's bad release)
    git/<owner>/<repo>.git                         the five sub-repositories (one commit: the pinned tree) and the
                                                   two extensions (sd-dynamic-prompts tagged v2.9.1, plus the tag
                                                   sdfleet-test-next on a commit above it: the extension version
                                                   change test's next release), at GitHub's owner/name
                                                   (stablediffusion under w-e-w: Stability-AI's is gone)
    openai/CLIP/archive/<commit>.zip               the CLIP and open_clip archives at GitHub's archive paths
    mlfoundations/open_clip/archive/<commit>.zip
    simple/<project>/                              PEP 503 index of every locked file (`#sha256=` links)
    packages/<file>                                the files (hard links into the cache where possible)
    pins.json                                      commits, tags, paths, the wheel set per version
    bin/mirror_server.py                           the server (the same one as the stand-in fixture's)

Served by mirror_server.py: git at /<owner>/<repo>.git (smart HTTP through `git http-backend`), everything else
as static files. Same inputs give the same bytes and commit hashes; an unchanged build prints `up to date`.
Without ../shared/upstream it builds nothing, says why, and exits 3 (the real scenarios are then skipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_fixture as bf  # noqa: E402 (the git plumbing and the PEP 503 helpers are shared)
import real_wheels as rw  # noqa: E402

STAMP = ".fixture-stamp"
RECIPE = "sdfleet-real-fixture/1"
SKIP_RC = 3
WEBUI = "AUTOMATIC1111/stable-diffusion-webui"
WEBUI_HISTORY = ("v1.9.4", "v1.10.1", "dev")  # one branch, oldest first
WEBUI_TAGS = ("v1.9.4", "v1.10.1")
BROKEN_TAG = "sdfleet-test-broken"  # a release that fails its health gate (the update rollback test)
BROKEN_MESSAGE = "sdfleet test fixture: this release is broken on purpose (webui.py exits at start)"
NEXT_TAG = "sdfleet-test-next"  # an extension's next release: its upstream tree plus one file (NEXT_FILE)
NEXT_FILE = "SDFLEET-TEST-NEXT.md"


@dataclass(frozen=True)
class Repo:
    """A repository served at GitHub's path, built from one archive of ../shared/upstream."""

    manifest_name: str
    path: str  # owner/name (no .git)
    branch: str
    env: str = ""  # the launcher's <env>_REPO / <env>_COMMIT_HASH prefix ("" for extensions)
    tag: str = ""
    next_tag: str = ""  # a tag on a commit above the upstream tree (a later release, for an update test)


REPOS = (
    Repo("stable-diffusion-webui-assets", "AUTOMATIC1111/stable-diffusion-webui-assets", "master", "ASSETS"),
    Repo("stablediffusion", "w-e-w/stablediffusion", "main", "STABLE_DIFFUSION"),
    Repo("generative-models", "Stability-AI/generative-models", "main", "STABLE_DIFFUSION_XL"),
    Repo("k-diffusion", "crowsonkb/k-diffusion", "master", "K_DIFFUSION"),
    Repo("BLIP", "salesforce/BLIP", "main", "BLIP"),
    Repo("stable-diffusion-webui-localization-zh_CN", "dtlnor/stable-diffusion-webui-localization-zh_CN", "main"),
    Repo("sd-dynamic-prompts", "adieyal/sd-dynamic-prompts", "main", tag="v2.9.1", next_tag=NEXT_TAG),
)
ARCHIVES = {"CLIP": "openai/CLIP", "open_clip": "mlfoundations/open_clip"}


def manifest(upstream: Path) -> list[dict[str, object]]:
    """The entries of ../shared/upstream/manifest.json."""
    return json.loads((upstream / "manifest.json").read_text())


def entry(entries: list[dict[str, object]], name: str, ref: str | None = None) -> dict[str, object]:
    """The manifest entry of `name` (and `ref`, for the webui's several trees)."""
    for item in entries:
        if item["name"] == name and (ref is None or item["ref"] == ref):
            return item
    raise SystemExit(f"manifest.json has no entry {name} {ref or ''}")


def fingerprint(upstream: Path) -> str:
    """Hash of every input: the manifest (archive hashes), the locks, this script, its helpers, the server."""
    digest = hashlib.sha256(RECIPE.encode())
    digest.update((upstream / "manifest.json").read_bytes())
    for path in sorted(rw.LOCK_DIR.glob("*.txt")) + [Path(__file__), HERE / "real_wheels.py", bf.SERVER,
                                                     HERE / "build_fixture.py"]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a tree tarball (no top folder) into a fresh directory; return it."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="tar")
    return into


def build_webui(upstream: Path, entries: list[dict[str, object]], git_dir: Path, scratch: Path) -> dict[str, object]:
    """The webui's one history v1.9.4 -> v1.10.1 -> dev, with annotated tags; returns its pins."""
    repo = git_dir / f"{WEBUI}.git"
    repo.parent.mkdir(parents=True, exist_ok=True)
    bf.init_bare(repo, "master")
    commits: dict[str, str] = {}
    tag_objects: dict[str, str] = {}
    parent = None
    for ref in WEBUI_HISTORY:
        item = entry(entries, "stable-diffusion-webui", ref)
        tree = unpack(upstream / str(item["archive"]), scratch / "tree")
        when = int(item["committed"])  # type: ignore[arg-type]
        parent = bf.commit(repo, tree, f"{ref}: upstream tree of {item['commit']}", when, parent, scratch)
        commits[ref] = parent
        if ref in WEBUI_TAGS:
            tag_objects[ref] = bf.annotated_tag(repo, ref, parent, when)
    # The update test's bad release: v1.10.1's tree whose webui.py exits at import, tagged on top of v1.10.1
    # (on no branch). Made here, in build/, from the archive; never stored in the repository.
    item = entry(entries, "stable-diffusion-webui", "v1.10.1")
    tree = unpack(upstream / str(item["archive"]), scratch / "tree")
    webui_py = tree / "webui.py"
    webui_py.write_text(f"raise SystemExit({BROKEN_MESSAGE!r})\n" + webui_py.read_text(encoding="utf-8"),
                        encoding="utf-8")
    when = int(item["committed"]) + 60  # type: ignore[arg-type]
    commits[BROKEN_TAG] = bf.commit(repo, tree, f"{BROKEN_TAG}: v1.10.1 whose webui.py exits at start", when,
                                    commits["v1.10.1"], scratch)
    tag_objects[BROKEN_TAG] = bf.annotated_tag(repo, BROKEN_TAG, commits[BROKEN_TAG], when)
    bf.set_ref(repo, "refs/heads/master", commits["v1.10.1"])
    bf.set_ref(repo, "refs/heads/dev", commits["dev"])
    bf.git("update-server-info", env=bf.git_env(GIT_DIR=str(repo)))
    return {"path": f"/{WEBUI}.git", "commits": commits, "tag_objects": tag_objects,
            "branches": {"master": commits["v1.10.1"], "dev": commits["dev"]},
            "upstream_commits": {ref: entry(entries, "stable-diffusion-webui", ref)["commit"] for ref in WEBUI_HISTORY}}


def build_repo(upstream: Path, entries: list[dict[str, object]], spec: Repo, git_dir: Path,
               scratch: Path) -> dict[str, object]:
    """One repository with one commit (the upstream tree) on its branch; returns its pins."""
    item = entry(entries, spec.manifest_name)
    repo = git_dir / f"{spec.path}.git"
    repo.parent.mkdir(parents=True, exist_ok=True)
    bf.init_bare(repo, spec.branch)
    tree = unpack(upstream / str(item["archive"]), scratch / "tree")
    when = int(item["committed"])  # type: ignore[arg-type]
    sha = bf.commit(repo, tree, f"upstream tree of {item['commit']}", when, None, scratch)
    bf.set_ref(repo, f"refs/heads/{spec.branch}", sha)
    if spec.tag:
        bf.annotated_tag(repo, spec.tag, sha, when)
    pins: dict[str, object] = {"path": f"/{spec.path}.git", "branch": spec.branch, "commit": sha, "env": spec.env,
                               "tag": spec.tag, "upstream_commit": item["commit"]}
    if spec.next_tag:
        # Made here, in build/, on no branch; never stored in the repository.
        (tree / NEXT_FILE).write_text(f"sdfleet test fixture: {spec.next_tag}, the release after {spec.tag}\n")
        following = bf.commit(repo, tree, f"{spec.next_tag}: {spec.tag} plus {NEXT_FILE}", when + 60, sha, scratch)
        bf.annotated_tag(repo, spec.next_tag, following, when + 60)
        pins["next"] = {"tag": spec.next_tag, "commit": following, "file": NEXT_FILE}
    bf.git("update-server-info", env=bf.git_env(GIT_DIR=str(repo)))
    return pins


def build_archives(upstream: Path, entries: list[dict[str, object]], out: Path) -> dict[str, dict[str, str]]:
    """The CLIP and open_clip zips at GitHub's archive paths; returns {name: {path, sha256}}."""
    result = {}
    for name, owner_repo in ARCHIVES.items():
        item = entry(entries, name)
        rel = f"{owner_repo}/archive/{item['commit']}.zip"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upstream / str(item["archive"]), out / rel)
        result[name] = {"path": f"/{rel}", "sha256": str(item["sha256"])}
    return result


def link_or_copy(src: Path, dest: Path) -> None:
    """Hard-link `src` to `dest` (same file system: no copy of gigabytes), else copy it."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def build_index(out: Path) -> dict[str, object]:
    """packages/ and simple/ from the locked files in the cache (fetched first when missing)."""
    rw.fetch()
    files = {path.name: path for path in rw.wheels_dir().iterdir()}
    wanted: dict[str, dict[str, str]] = {}
    sets: dict[str, list[str]] = {}
    by_digest = {}
    for version in rw.LOCKS:
        for name, ver, digest in rw.locked(version):
            by_digest.setdefault(digest, (name, ver))
    versions = {ver for _, ver in by_digest.values()}
    for filename, path in sorted(files.items()):
        # Only a file whose name carries a locked version may be locked: the rest are not hashed.
        candidate = any(f"-{ver}" in filename for ver in versions)
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if candidate else ""
        if digest in by_digest:
            wanted[filename] = {"project": bf.normalize(by_digest[digest][0]), "version": by_digest[digest][1],
                                "sha256": digest}
    missing = set(by_digest) - {w["sha256"] for w in wanted.values()}
    if missing:
        raise SystemExit(f"the cache {rw.wheels_dir()} lacks {len(missing)} locked files; run real_wheels.py fetch")
    packages = out / "packages"
    packages.mkdir(parents=True)
    for filename in wanted:
        link_or_copy(files[filename], packages / filename)
    projects: dict[str, list[str]] = {}
    for filename, info in wanted.items():
        projects.setdefault(info["project"], []).append(filename)
    simple = out / "simple"
    simple.mkdir()
    (simple / "index.html").write_text("<!DOCTYPE html>\n<html><body>\n" + "".join(
        f'<a href="{p}/">{p}</a>\n' for p in sorted(projects)) + "</body></html>\n")
    for project, names in projects.items():
        (simple / project).mkdir()
        anchors = "".join(f'<a href="../../packages/{n}#sha256={wanted[n]["sha256"]}">{n}</a>\n' for n in sorted(names))
        (simple / project / "index.html").write_text(
            f"<!DOCTYPE html>\n<html><body><h1>Links for {project}</h1>\n{anchors}</body></html>\n")
    for version in rw.VERSIONS:
        digests = {d for _, _, d in rw.locked(version)}
        sets[version] = sorted(n for n, info in wanted.items() if info["sha256"] in digests)
    size = sum((packages / n).stat().st_size for n in wanted)
    return {"index": "/simple/", "files": len(wanted), "bytes": size, "sets": sets}


def build(out: Path, upstream: Path) -> None:
    """Write the whole fixture into `out` (its content replaced, the directory kept for bind mounts)."""
    entries = manifest(upstream)
    out.mkdir(parents=True, exist_ok=True)
    for child in out.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        git_dir = out / "git"
        pins: dict[str, object] = {"port": 8080, "webui": build_webui(upstream, entries, git_dir, scratch)}
        pins["repos"] = {spec.path: build_repo(upstream, entries, spec, git_dir, scratch) for spec in REPOS}
    pins["archives"] = build_archives(upstream, entries, out)
    pins["wheels"] = build_index(out)
    (out / "bin").mkdir()
    shutil.copyfile(bf.SERVER, out / "bin" / "mirror_server.py")
    (out / "pins.json").write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Build unless up to date; exit SKIP_RC (3) when ../shared/upstream is absent."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=bf.REPO_ROOT / "build" / "real-fixture")
    parser.add_argument("--upstream", type=Path, default=rw.UPSTREAM)
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    args = parser.parse_args(argv)
    if not (args.upstream / "manifest.json").is_file():
        print(f"real fixture: {args.upstream} is missing (it holds the real webui trees, which GitHub would serve; "
              "this machine cannot reach GitHub), so the real-webui scenarios are skipped", file=sys.stderr)
        return SKIP_RC
    stamp = fingerprint(args.upstream)
    if not args.force and (args.out / STAMP).is_file() and (args.out / STAMP).read_text().strip() == stamp:
        print(f"real fixture: {args.out} up to date ({stamp[:12]})")
        return 0
    build(args.out, args.upstream)
    (args.out / STAMP).write_text(stamp + "\n")
    pins = json.loads((args.out / "pins.json").read_text())
    print(f"real fixture: built {args.out} ({stamp[:12]}): {pins['wheels']['files']} files, "
          f"{pins['wheels']['bytes'] / 1e9:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
