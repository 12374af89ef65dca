"""Tests of state_inputs: what a role's state probe compares changes with any input or role file."""
from __future__ import annotations

import json

import pytest

from ansible_collections.sdfleet.toolkit.plugins.filter import role_state


@pytest.fixture
def role(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks/main.yml").write_text("---\n- name: A task\n")
    (tmp_path / "defaults").mkdir()
    (tmp_path / "defaults/main.yml").write_text("port: 7860\n")
    role_state._tree_digest.cache_clear()
    return tmp_path


def test_the_digest_is_stable_and_ignores_key_order(role):
    one = role_state.state_inputs({"a": 1, "b": [1, 2]}, str(role))
    assert one == role_state.state_inputs({"b": [1, 2], "a": 1}, str(role))
    assert json.loads(one)["inputs"] == {"a": 1, "b": [1, 2]} and len(json.loads(one)["role"]) == 64


def test_any_input_value_changes_it(role):
    base = role_state.state_inputs({"port": 7860, "users": ["a:x"]}, str(role))
    assert role_state.state_inputs({"port": 7861, "users": ["a:x"]}, str(role)) != base
    assert role_state.state_inputs({"port": 7860, "users": ["a:y"]}, str(role)) != base


def test_a_changed_role_file_changes_it_bytecode_and_the_readme_do_not(role):
    base = role_state.state_inputs({}, str(role))
    (role / "README.md").write_text("# the role\n")
    (role / "__pycache__").mkdir()
    (role / "__pycache__/x.pyc").write_bytes(b"\0")
    role_state._tree_digest.cache_clear()
    assert role_state.state_inputs({}, str(role)) == base
    (role / "tasks/main.yml").write_text("---\n- name: Another task\n")
    role_state._tree_digest.cache_clear()
    assert role_state.state_inputs({}, str(role)) != base
    (role / "tasks/main.yml").rename(role / "tasks/other.yml")
    role_state._tree_digest.cache_clear()
    assert role_state.state_inputs({}, str(role)) != base


def test_a_role_path_that_is_no_dir_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        role_state.state_inputs({}, str(tmp_path / "nowhere"))
