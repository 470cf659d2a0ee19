"""The local session's sizing and JVM options."""
from kequn.session import JIT_OPTION, LOCAL_DEFAULTS, java_options, local_memory_gb

GIB = 2 ** 30


def test_local_heap_is_half_the_machine_within_bounds():
    assert local_memory_gb(24 * GIB) == 12
    assert local_memory_gb(int(23.5 * GIB)) == 11       # rounded down: never more than half
    assert local_memory_gb(3 * GIB) == 2                 # a small machine still gets the floor
    assert local_memory_gb(512 * GIB) == 32              # a large one is capped
    assert LOCAL_DEFAULTS["spark.driver.memory"] == f"{local_memory_gb()}g"


def test_java_options_add_the_jit_option_to_the_users_unless_they_set_it():
    assert java_options(None) == JIT_OPTION == "-XX:-DontCompileHugeMethods"
    assert java_options("-Dfoo=1 -Xss4m").split() == [JIT_OPTION, "-Dfoo=1", "-Xss4m"]
    assert java_options("-XX:+DontCompileHugeMethods") == "-XX:+DontCompileHugeMethods"


def test_the_local_jvm_compiles_huge_methods(spark):
    # Read from the running JVM itself, not from the session's settings: the option only counts if it
    # reached the java command line.
    args = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()
    assert JIT_OPTION in [str(a) for a in args]
