"""[historical] in the config: absent means nothing changes; a bad table name stops at start-up, named."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.config import load_config
from etl.errors import ConfigError
from tests.support import samples_config


def config_with(tmp_path: Path, historical: dict | None) -> Path:
    sections = {} if historical is None else {"historical": historical}
    return samples_config(tmp_path, endpoint="local", **sections)


def test_absent_or_without_a_table_is_off(tmp_path):
    assert load_config(config_with(tmp_path, None)).historical is None
    assert load_config(config_with(tmp_path, {"backend": "bigquery"})).historical is None


def test_duckdb_defaults_to_state_historical_under_base_dir(tmp_path):
    h = load_config(config_with(tmp_path, {"table": "historical"})).historical
    assert h is not None and h.backend == "duckdb" and h.path is not None
    assert h.path.parts[-2:] == ("state", "historical")


@pytest.mark.parametrize(("historical", "key", "words"), [
    ({"table": "events_history"}, "historical.table", "must not start with 'events'"),
    ({"table": "ds.events_old", "backend": "bigquery", "project": "p"}, "historical.table", "events_*"),
    ({"table": "a.b"}, "historical.table", "plain name"),
    ({"table": "just_a_table", "backend": "bigquery", "project": "p"}, "historical.table", "dataset.table"),
    ({"table": "ds.history", "backend": "bigquery"}, "historical.project", "needs project"),
    ({"table": "history", "backend": "sqlite"}, "historical.backend", "'duckdb' or 'bigquery'"),
])
def test_bad_settings_name_the_key(tmp_path, historical, key, words):
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, historical))
    message = str(caught.value)
    assert key in message and words in message


def test_bigquery_table_with_its_project(tmp_path):
    h = load_config(config_with(tmp_path, {"table": "my-proj.analytics_1.mpetl_historical", "backend": "bigquery",
                                           "location": "EU"})).historical
    assert h is not None and (h.table, h.project, h.location, h.path) == (
        "my-proj.analytics_1.mpetl_historical", None, "EU", None)
