"""Small name -> class registries, one per component family.

A new augmentation or label strategy is one file plus one ``@REGISTRY.register("name")``
line; configuration files refer to components by that name and pass keyword parameters.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories (usually classes) of one family."""

    def __init__(self, family: str):
        self.family = family
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.family} {name!r}; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def build(self, name: str, /, **params: Any) -> T:
        """Instantiate ``name`` with ``params``; unknown or missing parameters are a ConfigError."""
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**params)
        except TypeError as exc:
            raise ConfigError(f"{self.family} {name!r}: {exc}") from None
        return factory(**params)
