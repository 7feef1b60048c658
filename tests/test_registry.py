import pytest

from egoedge.trainer.common import Registry


def test_register_get_and_errors():
    reg = Registry("widget")

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a")() == 1 and "a" in reg and reg.keys() == ["a"] and len(reg) == 1
    with pytest.raises(KeyError, match="already registered"):
        reg.register("a")(a)
    with pytest.raises(KeyError, match="unknown widget 'b'; valid: a"):
        reg.get("b")
