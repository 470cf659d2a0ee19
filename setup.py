import runpy
from pathlib import Path

from setuptools import find_packages, setup

# Every version lives in lib/kequn/versions.py; read it without importing the package.
v = runpy.run_path(str(Path(__file__).parent / "lib" / "kequn" / "versions.py"))

setup(
    name="kequn",
    version="0.1.0",
    description="Customer-group platform for banks: Spark jobs on Delta Lake",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    python_requires=v["PYTHON_REQUIRES"],
    install_requires=v["PYTHON_PACKAGES"],
    extras_require={"test": v["TEST_PACKAGES"], "dev": v["TEST_PACKAGES"]},
    entry_points={"console_scripts": ["kequn=kequn.cli:main"]},
)
