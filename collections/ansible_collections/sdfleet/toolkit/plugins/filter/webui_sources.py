# -*- coding: utf-8 -*-
"""Every source lookup of the webui_repo role, for one ``sdfleet.toolkit.git_source`` call (``repositories``)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def webui_source_lookups(sources: Sequence[str], version: str, subrepos: Sequence[Mapping[str, Any]],
                         url_packages: Sequence[Mapping[str, Any]], extensions: Sequence[Mapping[str, Any]],
                         names: Mapping[str, str]) -> list[dict[str, Any]]:
    """The lookups in order: the webui at ``version``, each sub-repository (``<env>_REPO``, any ref), each URL
    package (``kind: http``), each kept extension at its version. Each entry's ``names`` say how a refusal names its
    inputs: ``names`` (the role's labels) with its own list's position (``webui_repo_subrepos[2].sources``,
    ``sdfleet_webui_extensions[0].version``)."""
    lookups: list[dict[str, Any]] = [
        {"name": "stable-diffusion-webui", "sources": list(sources), "ref": str(version), "names": dict(names)}]
    lookups += [{"name": f"{repo['env']}_REPO", "sources": list(repo["sources"]),
                 "names": {**names, "sources": f"webui_repo_subrepos[{i}].sources"}}
                for i, repo in enumerate(subrepos or [])]
    lookups += [{"name": str(pkg["env"]), "kind": "http", "sources": list(pkg["sources"]),
                 "names": {**names, "sources": f"webui_repo_url_packages[{i}].sources"}}
                for i, pkg in enumerate(url_packages or [])]
    lookups += [{"name": f"extension {ext['name']}", "sources": list(ext["sources"]), "ref": str(ext["version"]),
                 "names": {**names, "sources": f"sdfleet_webui_extensions[{ext['index']}].sources",
                           "ref": f"sdfleet_webui_extensions[{ext['index']}].version"}}
                for ext in extensions or []]
    return lookups


class FilterModule:
    """sdfleet webui source filters."""

    def filters(self) -> dict[str, Any]:
        return {"webui_source_lookups": webui_source_lookups}
