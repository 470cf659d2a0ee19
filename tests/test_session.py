"""The local session's sizing (no Spark: a pure function of the machine's memory)."""
from kequn.session import LOCAL_DEFAULTS, local_memory_gb

GIB = 2 ** 30


def test_local_heap_is_half_the_machine_within_bounds():
    assert local_memory_gb(24 * GIB) == 12
    assert local_memory_gb(int(23.5 * GIB)) == 11       # rounded down: never more than half
    assert local_memory_gb(3 * GIB) == 2                 # a small machine still gets the floor
    assert local_memory_gb(512 * GIB) == 32              # a large one is capped
    assert LOCAL_DEFAULTS["spark.driver.memory"] == f"{local_memory_gb()}g"
