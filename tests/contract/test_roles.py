"""Role contracts that hold for every role in roles/ (and test-only roles).

- ``meta/argument_specs.yml`` declares exactly the variables of
  ``defaults/main.yml``, with equal defaults (STYLE.md "Validation");
- every public variable carries its role's prefix;
- every template opens with the managed header (after a shebang);
- every role has a README with a variables table.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()) if (ROOT / "roles").is_dir() else []
ROLE_IDS = [r.name for r in ROLES]


def _load(path: pathlib.Path) -> dict:
    if not path.is_file():
        return {}
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def _defaults(role: pathlib.Path) -> dict:
    merged: dict = {}
    dpath = role / "defaults" / "main"
    if dpath.is_dir():
        for f in sorted(dpath.glob("*.yml")):
            merged.update(_load(f))
    merged.update(_load(role / "defaults" / "main.yml"))
    return merged


def _spec_options(role: pathlib.Path) -> dict:
    spec = _load(role / "meta" / "argument_specs.yml").get("argument_specs", {})
    # The entry point main; the fleet contract (roles/sdfleet) has only check (its tasks; plays load it without).
    entry = spec.get("main") or (spec.get("check") if set(spec) == {"check"} else None) or {}
    return entry.get("options") or {}


def test_there_are_roles():
    assert ROLES, "no roles found under roles/"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_argument_spec_exists(role):
    assert (role / "meta" / "argument_specs.yml").is_file(), f"{role.name}: meta/argument_specs.yml missing"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_spec_keys_equal_defaults_keys(role):
    defaults, options = _defaults(role), _spec_options(role)
    assert set(defaults) == set(options), (
        f"{role.name}: only in defaults: {sorted(set(defaults) - set(options))}; "
        f"only in argument_specs: {sorted(set(options) - set(defaults))}")


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_spec_defaults_equal_defaults_values(role):
    defaults, options = _defaults(role), _spec_options(role)
    for name, value in defaults.items():
        opt = options.get(name) or {}
        if "default" in opt:
            assert opt["default"] == value, f"{role.name}: {name}: spec default {opt['default']!r} != defaults {value!r}"
        else:
            # A spec without a default is only right for values computed from
            # other variables (a Jinja expression in defaults).
            assert isinstance(value, str) and "{{" in value, (
                f"{role.name}: {name} has a literal default {value!r} but no default in argument_specs")


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_public_variables_are_prefixed(role):
    prefix = f"{role.name}_"
    bad = [k for k in _defaults(role) if not k.startswith(prefix)]
    assert not bad, f"{role.name}: defaults without the '{prefix}' prefix: {bad}"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_templates_have_managed_header(role):
    for tpl in sorted((role / "templates").rglob("*.j2")):
        lines = tpl.read_text(encoding="utf-8").splitlines()
        if lines and lines[0].startswith("#!"):
            lines = lines[1:]
        head = "\n".join(lines[:2])
        assert "ansible_managed" in head, f"{tpl.relative_to(ROOT)}: no '{{{{ ansible_managed | comment }}}}' header"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_readme_has_variables_table(role):
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name}: README.md missing"
    text = readme.read_text(encoding="utf-8")
    for name in _defaults(role):
        assert name in text, f"{role.name}: README does not document {name}"
