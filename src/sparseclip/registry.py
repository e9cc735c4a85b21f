"""One registration style for every kind the project lets a user choose: head kinds, data formats, SAE kinds,
tower pairs, search backends.

In the spirit of timm's ``register_model`` / ``create_model``: a kind is one entry (a class or a small object)
that builds itself and declares what it can do; the code that uses kinds asks the registry for the entry and
calls it, and nothing outside the entry compares kind names. A new kind, in the library or in a user's own
module (or a test), is one decorated definition::

    from sparseclip.model.heads import HEADS, Head

    @HEADS.register("jumprelu")
    class JumpReLUHead(Head):
        ...

after which ``model.head.kind=jumprelu`` validates, trains, saves, loads, evaluates and searches like the
shipped kinds. ``Registry.get`` is the only lookup: an unknown name is one clear error naming the config key
and the registered names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown or duplicate kind name (one line: the key, the name, the registered names)."""


class Registry(Generic[T]):
    """Named entries of one sort. ``what`` names the sort in messages (``"head kind"``), ``key`` the config key or
    option that selects an entry (``"model.head.kind"``)."""

    def __init__(self, what: str, key: str):
        self.what, self.key = what, key
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T | None = None, *, replace: bool = False) -> Callable[[T], T] | T:
        """Register ``entry`` under ``name``; without ``entry``, a decorator. A second entry under a registered
        name is refused unless ``replace``."""
        if not name or not name.replace("_", "").replace("-", "").isalnum() or name.lower() != name:
            raise RegistryError(f"{self.key}: a {self.what} name is lower-case letters, digits, '_' or '-'; "
                                f"got {name!r}")

        def add(obj: T) -> T:
            if name in self._entries and not replace and self._entries[name] is not obj:
                raise RegistryError(f"{self.key}: a {self.what} named {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        """Remove an entry (a test's own kind, after the test)."""
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The entry registered under ``name``; an unknown name is one :class:`RegistryError`."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise RegistryError(f"{self.key}: unknown {self.what} {name!r} "
                                f"(registered: {', '.join(self._entries) or 'none'})") from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries)})"
