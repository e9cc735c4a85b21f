"""The one registration style (sparseclip.registry): lookups, refusals, and a test's own kind coming and going."""

import pytest

from sparseclip.registry import Registry, RegistryError


def test_register_get_and_refusals():
    reg: Registry[int] = Registry("widget", "thing.kind")

    @reg.register("one")
    def one():
        return 1

    reg.register("two", 2)
    assert reg.get("one") is one and reg.get("two") == 2
    assert reg.names() == ("one", "two") and "one" in reg and len(reg) == 2
    with pytest.raises(RegistryError, match=r"thing.kind: unknown widget 'three' \(registered: one, two\)"):
        reg.get("three")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("two", 3)
    reg.register("two", 3, replace=True)
    assert reg.get("two") == 3
    with pytest.raises(RegistryError, match="lower-case"):
        reg.register("Bad Name", 4)
    reg.unregister("two")
    assert "two" not in reg and reg.names() == ("one",)
