"""The one SparkSession factory.

Locally it starts ``local[*]`` with Delta's extension and catalog, the pinned
JVM packages (from the project-local jar cache filled by ``scripts/setup``, so
no network is needed after set-up), a checkpoint directory and small shuffle
partitions. Under ``spark-submit`` it leaves master and packages to the
command line, so nothing here breaks on a cluster.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, TypeVar

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from . import versions
from .config import PROJECT_ROOT, ConfigError, PipelineConfig

log = logging.getLogger(__name__)

JAR_CACHE = Path(os.environ.get("KEQUN_JAR_CACHE", PROJECT_ROOT / ".cache" / "jars"))
IVY_CACHE = Path(os.environ.get("KEQUN_IVY_CACHE", PROJECT_ROOT / ".cache" / "ivy"))
IVY_SETTINGS = PROJECT_ROOT / "conf" / "ivysettings.xml"


def machine_memory_bytes() -> Optional[int]:
    """The machine's physical memory, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def local_memory_gb(total_bytes: Optional[int] = None) -> int:
    """The local JVM's heap: half the machine's memory, between 2 and 32 GB.

    In local mode the driver is the only executor, and its storage memory holds what ingest caches
    (a load's parsed rows). With 6 GB on a 24 GB machine a 16M-row holdings load spilled: 113-125 s,
    against 104 s with 12 GB. The other half is left to Python, the OS and its file cache; above 32 GB
    the JVM loses its compressed object pointers, so more heap holds less.
    """
    if total_bytes is None:
        total_bytes = machine_memory_bytes()
        if total_bytes is None:
            return 4
    return max(2, min(32, int(total_bytes / 2**30 / 2)))


LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "4",
    "spark.sql.adaptive.enabled": "true",
    # A join whose shuffled sides are both large is a sort-merge join: both sides sorted. Where every
    # partition of one side holds at most this many bytes, adaptive execution builds a hash table of it
    # instead (Spark requires at least spark.sql.adaptive.advisoryPartitionSizeInBytes, 64 MB): the
    # memory a task's table takes stays bounded, and bigger sides keep the sort. Identity's overlap of
    # the day's 2.58M records with the day before's at 1,000,000 persons: 7.2 s sorted, 4.4 s hashed.
    "spark.sql.adaptive.maxShuffledHashJoinLocalMapThreshold": "64m",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": f"{local_memory_gb()}g",
    "spark.databricks.delta.schema.autoMerge.enabled": "false",
    # Delta rebuilds a table's state with 50 tasks by default: pure overhead on one machine.
    "spark.databricks.delta.snapshotPartitions": "4",
    # VACUUM lists a table's files in this many tasks (10,000 by default): 25 s for a one-file table.
    "spark.sql.sources.parallelPartitionDiscovery.parallelism": "4",
    # Keep the driver's own output quiet: our log says what runs.
    "spark.log.level": "WARN",
}


# landing.md: timestamps are local time, China Standard Time. Parsing them and taking their dates must
# happen in that zone wherever the job runs: under spark-submit the JVM's own zone (often UTC on a
# cluster) would store every instant 8 hours off, and a warehouse written by both would disagree with
# itself. So it is set in both modes, unless the command line or conf/pipeline.yaml names another.
TIME_ZONE_KEY, TIME_ZONE = "spark.sql.session.timeZone", "Asia/Shanghai"

# In any zone but UTC, Delta re-derives a small table's file list from the table's whole log after every
# commit, to check the list it keeps in the commit's checksum file (on by default: forceOnNonUTC). Delta
# does not say why; its fixes show a zone reaching a file list through timestamp partition values, which
# Delta formats in a session's zone (delta-io/delta#3378, #5599). kequn partitions by dates alone, and Warehouse refuses a timestamp
# partition column, so the check guards nothing here; it was 110 of 1,398 Spark jobs of the 150-person
# second day, and the day took 163.4 s with it, 149.3 s without (means of two runs each,
# 2026-12-04). tests/test_tables.py checks what it checked. Set in both modes, like the zone.
DELTA_ZONE_CHECK_KEY = "spark.databricks.delta.allFilesInCrc.verificationMode.forceOnNonUTC.enabled"

# A write partitioned by a column sorts each task's rows by it first, so that one file is open at a time,
# unless a task may keep this many files open: then it sorts only when it meets more partition values than
# that. kequn writes one day (one partition value) at a time, so the sort orders rows that are all alike.
# Delta's writer honours the setting. The 89M rows of one day of gold.tag_values at 1,000,000 persons took
# 32-38 s to write with the sort and 22-25 s without (BENCHMARKS.md, 2026-12-06). Set in both modes.
CONCURRENT_WRITERS_KEY = "spark.sql.maxConcurrentOutputFileWriters"
SESSION_SETTINGS = {TIME_ZONE_KEY: TIME_ZONE, DELTA_ZONE_CHECK_KEY: "false", CONCURRENT_WRITERS_KEY: "4"}

# HotSpot leaves a method of more than 8,000 bytes of bytecode to its interpreter, and whole-stage code
# generation writes one method per stage: a stage computing many columns at once (the tag rules over the
# joined passes, for one) then runs interpreted, row by row. Spark's docs name the limit
# (spark.sql.codegen.hugeMethodLimit). Lifted for the local JVM: at 1,000,000 persons the tags' joined
# passes with their rules took 14.3 s to compute, 5.6 s with it; the whole tags stage 422.5 s and 405.9 s;
# the tags benchmark's whole catalog 96.5 s and 90.4 s. At 100,000 persons it changes nothing measurable
# (full 389.3 / 395.0 s, daily 190.6 / 189.9 s, without / with; BENCHMARKS.md). Under
# spark-submit the driver's JVM is running already: the command line passes it (README, "Running on a
# cluster"). Added to Java options given in --conf or conf/pipeline.yaml, unless they name the flag.
JIT_OPTION, JAVA_OPTIONS_KEY = "-XX:-DontCompileHugeMethods", "spark.driver.extraJavaOptions"


def java_options(given: Optional[str]) -> str:
    """The local driver's Java options: ``given`` (the user's) with the JIT option, unless they set it."""
    if given and "DontCompileHugeMethods" in given:
        return given
    return " ".join(filter(None, [JIT_OPTION, given]))


def cached_jars(packages: list[str]) -> Optional[list[str]]:
    """Jars resolved at set-up for exactly these coordinates, or None."""
    manifest = JAR_CACHE / "manifest.txt"
    if not manifest.exists():
        return None
    lines = manifest.read_text().splitlines()
    if not lines or lines[0] != ",".join(sorted(packages)):
        return None
    jars = [str(JAR_CACHE / name) for name in lines[1:] if name]
    return jars if jars and all(Path(j).exists() for j in jars) else None


def _artifact(jar_name: str) -> str:
    import re
    m = re.match(r"^(.*?)-\d", jar_name)
    return m.group(1) if m else jar_name


def _spark_artifacts() -> set[str]:
    import pyspark
    jars = Path(pyspark.__file__).parent / "jars"
    return {_artifact(p.name) for p in jars.glob("*.jar")}


def package_conf(packages: list[str]) -> dict[str, str]:
    """How the JVM finds its packages: the local cache if filled, else Ivy (Maven Central)."""
    jars = cached_jars(packages)
    if jars:
        return {"spark.jars": ",".join(jars)}
    return {
        "spark.jars.packages": ",".join(packages),
        "spark.jars.ivy": str(IVY_CACHE),
        "spark.jars.ivySettings": str(IVY_SETTINGS),
    }


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ


def build_session(
    warehouse: Optional[str] = None,
    config: Optional[PipelineConfig] = None,
    overrides: Optional[Mapping[str, str]] = None,
    extra_packages: Optional[list[str]] = None,
) -> SparkSession:
    """Return the SparkSession for a kequn run, with every warehouse table registered."""
    config = config or PipelineConfig()
    builder = SparkSession.builder.appName(config.spark.app_name)
    conf: dict[str, str] = {}
    if not under_spark_submit():
        builder = builder.master(os.environ.get("KEQUN_SPARK_MASTER", config.spark.master))
        conf.update(LOCAL_DEFAULTS)
        conf.update(SESSION_SETTINGS)
        conf.update(package_conf(versions.JVM_PACKAGES + list(extra_packages or [])))
        if os.environ.get("KEQUN_TEST"):
            conf.update({"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2",
                         "spark.default.parallelism": "2", "spark.driver.memory": "2g",
                         "spark.databricks.delta.snapshotPartitions": "1",
                         # Tests run thousands of tiny queries, and every task generated Java source for
                         # its projections (Delta's log replay above all): half the local JVM's CPU in a
                         # profiled run. Interpreted projections cut a 150-person run by 19 %. The setting
                         # turns whole-stage code generation off too: the suite's plans have no compiled
                         # stage (*(n)). Not a default: 41 % slower at 100k persons.
                         "spark.sql.codegen.factoryMode": "NO_CODEGEN"})
    conf.update({
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    })
    if warehouse:
        conf["spark.sql.warehouse.dir"] = str(Path(warehouse).absolute() / "_spark_warehouse")
    conf.update(config.spark.conf)
    conf.update(overrides or {})
    if not under_spark_submit():
        conf[JAVA_OPTIONS_KEY] = java_options(conf.get(JAVA_OPTIONS_KEY))
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    if under_spark_submit():
        submitted = spark.sparkContext.getConf()
        if submitted.get("spark.log.level") is None:
            # Spark's INFO output (Delta prints whole snapshots) buries the stage log; --conf can say otherwise.
            spark.sparkContext.setLogLevel("WARN")
        for key, value in SESSION_SETTINGS.items():
            if submitted.get(key) is None and key not in conf:
                spark.conf.set(key, value)
    # Where the code came from (the --py-files zip on a cluster) and where it runs: the first thing
    # to check when a submitted job behaves differently from a local one.
    import kequn
    log.info("session: master %s, Spark %s, kequn from %s, time zone %s", spark.sparkContext.master,
             spark.version, Path(kequn.__file__).parent, spark.conf.get(TIME_ZONE_KEY))
    if warehouse:
        spark.sparkContext.setCheckpointDir(str(Path(warehouse).absolute() / "_checkpoints"))
        from .tables import Warehouse
        Warehouse(spark, warehouse).register_all()
    return spark


def resolve_packages(packages: Optional[list[str]] = None) -> list[str]:
    """Resolve the pinned JVM packages from Maven Central once, into the project-local cache.

    Run by ``scripts/setup``; later sessions read the cached jars and need no network.
    """
    import shutil
    import subprocess
    import sys

    packages = sorted(packages or versions.JVM_PACKAGES)
    if cached_jars(packages):
        return cached_jars(packages)
    IVY_CACHE.mkdir(parents=True, exist_ok=True)
    # A throw-away JVM does the resolution, so this process's session gets the cached jars.
    code = (
        "from pyspark.sql import SparkSession\n"
        "s = (SparkSession.builder.master('local[1]')"
        f".config('spark.jars.packages', {','.join(packages)!r})"
        f".config('spark.jars.ivy', {str(IVY_CACHE)!r})"
        f".config('spark.jars.ivySettings', {str(IVY_SETTINGS)!r})"
        ".config('spark.ui.enabled', 'false').getOrCreate())\n"
        "print('JARS=' + s.sparkContext.getConf().get('spark.jars'))\n"
        "s.stop()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = next((l for l in out.stdout.splitlines() if l.startswith("JARS=")), None)
    if out.returncode != 0 or not line:
        raise RuntimeError(f"could not resolve {packages} from Maven Central:\n{out.stderr[-3000:]}")
    JAR_CACHE.mkdir(parents=True, exist_ok=True)
    names = []
    for uri in line[5:].split(","):
        src = uri.replace("file://", "").replace("file:", "")
        if _artifact(os.path.basename(src).split("_", 1)[-1]) in _spark_artifacts():
            # pyspark ships its own (newer) copy; an older one first on the classpath breaks Spark.
            continue
        shutil.copy2(src, JAR_CACHE / os.path.basename(src))
        names.append(os.path.basename(src))
    (JAR_CACHE / "manifest.txt").write_text("\n".join([",".join(packages)] + names) + "\n")
    return cached_jars(packages)


def held(df: DataFrame) -> DataFrame:
    """``df`` computed now and kept in executor storage, its plan cut (a local checkpoint).

    Kept serialized (each row's bytes, spilled to local disk when memory runs short) rather than as one
    object per row, Spark's default for a local checkpoint: holding the 16M parsed holdings of 100,000
    persons took 24-26 s that way against 38-40 s (fewer objects for the collector), and reading them
    back costs some 1.5 s more a pass. Kryo was slower still (28-34 s).
    """
    return df.localCheckpoint(eager=True, storageLevel=StorageLevel.MEMORY_AND_DISK)


def release(df: DataFrame) -> None:
    """Free a cached or locally checkpointed (``held``) frame's blocks now, not when the driver next collects
    garbage."""
    plan = df._jdf.queryExecution().logical()
    if plan.getClass().getSimpleName() == "LogicalRDD":
        plan.rdd().unpersist(False)
    else:
        df.unpersist()


Result = TypeVar("Result")


def concurrently(spark: SparkSession, work: Sequence[tuple], fn: Callable[..., Result], workers: int,
                 setting: str) -> list[Result]:
    """``fn(*item)`` for each item of ``work``, up to ``workers`` at once, results in ``work``'s order.

    Each piece of work is a few Spark jobs with driver-side work between them (planning, Delta's log
    and commit, collecting a count), during which the cores idle; threads overlap one item's driver
    work with another's tasks. Spark still runs one task per core, so the tasks' working memory does
    not grow with ``workers``; what each piece holds while it runs (ingest's parsed rows) does. Each
    thread keeps the caller's job group, description and tags, which the benchmark attributes stages
    by. Every item runs to its end; then the first failure, if any, is raised. ``setting``: the
    configuration key ``workers`` came from, for the error.
    """
    if workers < 1:
        raise ConfigError(f"conf/pipeline.yaml: {setting} must be at least 1, got {workers}")
    if workers == 1 or len(work) < 2:
        return [fn(*item) for item in work]
    from concurrent.futures import ThreadPoolExecutor

    from pyspark.util import inheritable_thread_target

    in_thread = inheritable_thread_target(spark)(fn)   # the caller's job group, description and tags
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kequn") as pool:
        futures = [pool.submit(in_thread, *item) for item in work]
        errors = [f.exception() for f in futures]
    for e in errors:
        if e is not None:
            raise e
    return [f.result() for f in futures]
