"""The analyst notebooks (notebooks/*.ipynb): each runs top to bottom against the demo warehouse,
draws at least one chart, and shows nothing that looks like personal data.

Every notebook found under notebooks/ is tested (parametrized at collection), so a new notebook is
covered without touching this file. Notebooks run in a kernel of this very interpreter (the
project's .venv): ipykernel's native ``python3`` spec, whatever kernel specs are installed elsewhere.
"""
import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell

# A Chinese mobile number, an 18-character resident ID number (last character a digit or X).
MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
ID_CARD = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")


def personal_data(text):
    return MOBILE.findall(text) + ID_CARD.findall(text)


def output_texts(nb):
    """(cell index, text) of every output a reader sees, images excepted (base64 is not text)."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield i, out.get("text", "")
            elif out.get("output_type") == "error":
                yield i, "\n".join(out.get("traceback", [])) + out.get("evalue", "")
            for mime, value in out.get("data", {}).items():
                if not mime.startswith("image/"):
                    yield i, value if isinstance(value, str) else "".join(value) if isinstance(value, list) else str(value)


def images(nb):
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def test_personal_data_patterns():
    assert personal_data("mobile 13812345678, again:15900001111") == ["13812345678", "15900001111"]
    assert personal_data("id 11010519491231002X.") == ["11010519491231002X"]
    assert personal_data("id 110105194912310021") == ["110105194912310021"]
    assert not personal_data("one_id 1241710637 C1295281232 12812345678 2026-11-25 0.1435 123456789012345678901")


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"identity.ipynb", "tags.ipynb", "segments.ipynb", "journeys.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_saved_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"
    assert nb.cells[0].cell_type == "markdown" and "KEQUN_WAREHOUSE" in nb.cells[0].source


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, pipeline_demo, monkeypatch):
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    _, warehouse, codes = pipeline_demo
    assert (Path(warehouse) / "gold" / "one_id_map").is_dir(), f"the demo pipeline built no warehouse: {codes}"
    monkeypatch.setenv("KEQUN_WAREHOUSE", str(warehouse))  # the kernel inherits this environment

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print('KERNEL', sys.executable)"))
    # kernel_dirs=[]: no installed spec can shadow the native one, which runs sys.executable.
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    client = NotebookClient(nb, km=km, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(path.parent)}})  # cwd notebooks/, as in Jupyter
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    kernel_line = "".join(o.get("text", "") for o in nb.cells.pop().outputs)  # the cell added above
    assert Path(kernel_line.split("KERNEL", 1)[1].strip()) == Path(sys.executable), kernel_line
    errors = [i for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: error outputs in cells {errors}"
    assert images(nb) >= 1, f"{path.name} drew no chart (no image/png output)"
    leaks = [(i, hit) for i, text in output_texts(nb) for hit in personal_data(text)]
    assert not leaks, f"{path.name}: outputs look like personal data (cell, match): {leaks[:5]}"
