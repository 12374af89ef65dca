"""Import a script of the project (scripts/, molecule/_shared/...) by its path, for the tests of its functions."""
from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType


def load_script(path: pathlib.Path, name: str) -> ModuleType:
    """The module at ``path``, registered as ``name`` (dataclasses look their module up while a class is built)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
