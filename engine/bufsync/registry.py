"""Things the modules of one package register (Moodle entities, portals, derived tables), found by importing
every module of the package the first time they are asked for: a new one is a new module, and no list names
them (alembic's dialect registration is the model)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, packages_only: bool = False) -> None:
        self.package = package
        self.packages_only = packages_only  # portals are folders; their package's plain modules are shared code
        self._items: dict[str, T] = {}
        self._found = False

    def add(self, name: str, item: T) -> T:
        self._items[name] = item
        return item

    def all(self) -> dict[str, T]:
        """name -> item, every module of the package imported (so registered) once."""
        if not self._found:
            self._found = True
            for module in pkgutil.iter_modules(importlib.import_module(self.package).__path__):
                if module.ispkg or not self.packages_only:
                    importlib.import_module(f"{self.package}.{module.name}")
        return dict(self._items)
