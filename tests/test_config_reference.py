"""docs/configuration.md is the configuration reference the code implies (every key, its default)."""
from pathlib import Path

from kequn import config_reference
from kequn.config import PipelineConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_reference_document_is_current():
    assert DOC.read_text() == config_reference.markdown(), \
        "regenerate: .venv/bin/python -m kequn.config_reference > docs/configuration.md"


def test_every_key_says_what_it_means():
    for pattern, cls, list_key in config_reference.FILES:
        for key, tp, _default, meaning in config_reference.file_rows(cls, list_key):
            assert meaning or tp.endswith("section"), f"{pattern}: {key} has no meaning"


def test_nested_keys_and_defaults_are_listed():
    keys = {k: d for k, _, d, _ in config_reference.rows(PipelineConfig)}
    assert keys["identity.engine"] == "`auto`" and keys["stream.trigger_seconds"] == "`5`"
    assert "conf_dir" not in keys
