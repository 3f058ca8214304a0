"""Lazy package faces (PEP 562) written as one list: the package's own typed imports.

A package that offers names from heavy modules without importing them at start writes each name
once, as an explicit re-export (``from pipeline.store.reader import open_result as open_result``)
inside ``if TYPE_CHECKING:``, so type checkers see it; :func:`lazy_face` reads that block from
the package's source and returns ``__all__`` and the module ``__getattr__`` that imports a name
on first use::

    if TYPE_CHECKING:
        from pipeline.store.reader import open_result as open_result

    __all__, __getattr__ = lazy_face(__name__, __file__)

Names imported at the top level from the package's own modules (eager, light ones) are part of
``__all__`` too.
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def face_names(init_file: str | Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The public names of a package face: every name, and the lazy ones with their source.

    Returns:
        ``(names, lazy)``: the names imported from ``pipeline`` modules at the top level and in
        the ``if TYPE_CHECKING:`` block, in source order; and for the latter, name ->
        ``(module, attribute)``.
    """
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    names: list[str] = []
    lazy: dict[str, tuple[str, str]] = {}

    def take(node: ast.stmt, into_lazy: bool) -> None:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:
                name = alias.asname or alias.name
                names.append(name)
                if into_lazy:
                    lazy[name] = (node.module, alias.name)

    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for inner in node.body:
                take(inner, into_lazy=True)
        else:
            take(node, into_lazy=False)
    return names, lazy


def lazy_face(
    package: str, init_file: str, extra: tuple[str, ...] = ()
) -> tuple[list[str], Callable[[str], Any]]:
    """``__all__`` and ``__getattr__`` of a package whose lazy names are its ``TYPE_CHECKING`` imports.

    Args:
        package: The package's ``__name__``.
        init_file: Its ``__file__`` (read once, at import).
        extra: Public names the package defines itself (constants), added to ``__all__``.
    """
    names, lazy = face_names(init_file)

    def __getattr__(name: str) -> Any:
        if name not in lazy:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = lazy[name]
        value = getattr(importlib.import_module(module), attribute)
        setattr(sys.modules[package], name, value)  # later lookups find it without this hook
        return value

    return [*names, *extra], __getattr__
