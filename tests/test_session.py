"""The local session's sizing, JVM options and join planning."""
from kequn.session import JIT_OPTION, LOCAL_DEFAULTS, java_options, local_memory_gb

from conftest import session_conf

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


def test_a_join_of_two_small_shuffled_sides_hashes_one_side_and_returns_the_sorted_joins_rows(spark):
    from chispa import assert_df_equality

    key = "spark.sql.adaptive.maxShuffledHashJoinLocalMapThreshold"
    left = spark.range(3000).selectExpr("CAST(id % 1000 AS STRING) AS k", "id AS a")
    right = spark.range(2000).selectExpr("CAST(id AS STRING) AS k", "id * 2 AS b")

    def joined():
        df = left.join(right, "k", "left").groupBy("k", "b").count()
        rows = spark.createDataFrame(df.collect(), df.schema)
        # The plan as run: adaptive execution prints it first, then the plan it started from.
        return rows, df._jdf.queryExecution().executedPlan().toString().split("== Initial Plan ==")[0]

    # Spark would broadcast sides this small; a bank's days are not, so broadcasts are off here.
    broadcasts_off = {"spark.sql.autoBroadcastJoinThreshold": "-1"}
    with session_conf(spark, broadcasts_off):
        hashed, plan = joined()
    assert "== Final Plan ==" in plan and "ShuffledHashJoin" in plan and "SortMergeJoin" not in plan
    with session_conf(spark, {**broadcasts_off, key: "0"}):   # Spark's default: both sides sorted
        merged, merged_plan = joined()
    assert "SortMergeJoin" in merged_plan and "ShuffledHashJoin" not in merged_plan
    assert_df_equality(hashed, merged, ignore_row_order=True)
    assert hashed.count() == 1000 and hashed.where("b IS NULL OR count != 3").count() == 0
