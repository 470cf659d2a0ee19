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
