"""Every pinned version of the project, in one place.

setup.py, scripts/setup, the SparkSession factory and the documented
``spark-submit --packages`` line all read from here, so they cannot drift.
delta-spark's Python metadata accepts pyspark >=4.1,<4.2; great-expectations
1.24 accepts pyspark <4.2; Delta's JVM artifact 4.4.1 is not served, so the
Python package is pinned to the JVM one, 4.4.0.
"""

PYTHON_REQUIRES = ">=3.11,<3.12"

PYSPARK = "4.1.4"
DELTA_SPARK = "4.4.0"
SCALA_BINARY = "2.13"
SPARK_BINARY = "4.1"

# JVM packages resolved from Maven Central at set-up into the project-local cache.
DELTA_PACKAGE = f"io.delta:delta-spark_{SPARK_BINARY}_{SCALA_BINARY}:{DELTA_SPARK}"
# Served at 4.1.1, not 4.1.4; only the streaming stage asks for it, and only when Kafka is configured.
KAFKA_PACKAGE = f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:4.1.1"
# Not served on this machine; clusters that want the graphframes engine add it to --packages.
GRAPHFRAMES_PACKAGE = f"io.graphframes:graphframes-spark4_{SCALA_BINARY}:0.12.3"

JVM_PACKAGES = [DELTA_PACKAGE]

PYTHON_PACKAGES = [
    f"pyspark=={PYSPARK}",
    f"delta-spark=={DELTA_SPARK}",
    "great-expectations[spark]==1.24.1",
    "graphframes-py==0.12.3",
    "PyYAML==6.0.3",
    "numpy>=1.26,<3",
    "scipy>=1.11,<2",
    "pandas>=2.1,<3",
    "pyarrow>=15",
]

# The installer scripts/setup puts into .venv first and installs everything else with: it resolves and
# installs in parallel (kequn's packages in about 35 s against 90 s for pip here; Airflow's 6 s against 65 s).
INSTALLER_PACKAGE = "uv==0.13.8"

TEST_PACKAGES = [
    "pytest>=8",
    "chispa==0.12.0",
    "duckdb==1.5.5",
    "duckdb-extension-delta==1.5.5",
    "deltalake>=1.6,<1.7",
    # notebooks/ are executed by the suite so that none can rot
    "nbclient==0.10.2",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
    "matplotlib==3.11.2",
]

# Airflow lives in its own virtual environment (.cache/airflow-venv): its pins must not constrain
# kequn's, and the cluster's scheduler is a separate installation anyway.
AIRFLOW_PACKAGES = [
    "apache-airflow==3.3.2",
    "apache-airflow-providers-apache-spark==6.3.4",
]
