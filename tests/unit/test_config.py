"""The functions' settings, read once from their environment at cold start."""

from __future__ import annotations

import pytest

from functions.core.config import ConfigurationError, Env, Settings


@pytest.mark.parametrize(("raw", "segtax"), [(None, None), ("", None), ("0", None), ("4", 4), ("600", 600)])
def test_segtax_is_absent_unless_a_taxonomy_id_is_configured(raw: str | None, segtax: int | None) -> None:
    env = {} if raw is None else {Env.OPENRTB_SEGTAX: raw}
    assert Settings.from_env(env).segtax == segtax


@pytest.mark.parametrize(
    ("name", "raw"),
    [(Env.OPENRTB_SEGTAX, "iab"), (Env.CATALOG_REFRESH_SECONDS, "-5"), (Env.RETENTION_DAYS, "0")],
)
def test_a_malformed_setting_stops_the_function_naming_it(name: str, raw: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: raw})


def test_a_missing_required_setting_is_named() -> None:
    with pytest.raises(ConfigurationError, match="events_table"):
        Settings.from_env({Env.MEMBERSHIP_TABLE: "m"}, require=("events_table", "membership_table"))
