"""Lazy package faces: `medflip.data.build_cache` works, but `import medflip.data.manifest` does not import
every module the face names (and so not torch: the labeler and data CLIs stay fast to start)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_face(package: str, names: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`names`: public name -> submodule of `package` that defines it. Returns (__getattr__, __dir__)."""

    def __getattr__(name: str) -> object:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
