"""One SparkSession for the whole test run (JVM start-up is paid once)."""
import os

import pytest

os.environ.setdefault("KEQUN_TEST", "1")
os.environ.setdefault("KEQUN_PSEUDONYM_KEY", "test-key-not-secret")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from kequn.session import build_session

    wh = tmp_path_factory.mktemp("session_wh")
    s = build_session(str(wh))
    yield s
    s.stop()


@pytest.fixture()
def warehouse(spark, tmp_path):
    """A fresh warehouse folder served by the shared session."""
    from kequn.tables import Warehouse

    return Warehouse(spark, str(tmp_path / "wh"))


DEMO_END = "2026-11-25"
DEMO_DAY1 = "2026-11-24"


@pytest.fixture(scope="session")
def pipeline_demo(spark, tmp_path_factory):
    """`kequn generate` then `kequn run` for two days: the warehouse the end-to-end checks and the
    notebooks read (built once per test run; the CLI runs in this process, on the shared session)."""
    from kequn import cli

    root = tmp_path_factory.mktemp("e2e")
    landing, wh = root / "landing", root / "warehouse"
    assert cli.main(["generate", "--out", str(landing), "--persons", "150", "--days", "4", "--seed", "3",
                     "--end", DEMO_END]) == 0
    codes = {}
    for day in (DEMO_DAY1, DEMO_END):
        codes[day] = cli.main(["run", "--landing", str(landing), "--warehouse", str(wh), "--as-of", day])
    return landing, wh, codes
