"""The registry: every directive declared completely, defaults valid (gunicorn's pattern)."""

from __future__ import annotations

import pytest

from cproxy.directives import DIRECTIVES, defaults, forms, lookup
from cproxy.directives.registry import Directive

ALL = list(DIRECTIVES.values())


@pytest.mark.parametrize("d", ALL, ids=lambda d: d.name)
def test_default_parses_and_is_written_canonically(d: Directive) -> None:
    value = d.type.parse(d.default)
    assert d.type.parse(d.type.format(value)) == value
    # Defaults are shown to users as written here, so they must be the canonical text.
    assert d.type.format(value) == d.default


@pytest.mark.parametrize("d", ALL, ids=lambda d: d.name)
def test_directive_is_documented_and_has_a_form(d: Directive) -> None:
    assert len(d.doc) > 40
    assert d.doc == d.doc.strip()
    assert d.form and all(part.strip() for part in d.form)
    assert d.type.allowed


@pytest.mark.parametrize("d", [d for d in ALL if d.example], ids=lambda d: d.name)
def test_example_parses(d: Directive) -> None:
    value = d.type.parse(d.example)
    assert d.type.format(value) != d.default


def test_attribute_names_carry_units() -> None:
    attrs = {d.name: d.attr for d in ALL}
    assert attrs["PersistTimeout"] == "persist_timeout_s"
    assert attrs["CacheMemory"] == "cache_memory_bytes"
    assert attrs["MaxActiveThreads"] == "max_active_threads"
    assert attrs["ServerConnGCRun"] == "server_conn_gc_run_s"
    assert len(set(attrs.values())) == len(attrs)


def test_lookup_is_case_insensitive() -> None:
    assert lookup("persisttimeout") is DIRECTIVES["PersistTimeout"]
    assert lookup("PERSISTTIMEOUT") is DIRECTIVES["PersistTimeout"]
    assert lookup("PersistTimeouts") is None


def test_forms_group_every_directive_once() -> None:
    grouped = forms()
    assert sum(len(ds) for ds in grouped.values()) == len(DIRECTIVES)
    assert [d.name for d in grouped["Server Configuration", "System Management", "Timeouts"]] == [
        "InputTimeout",
        "ReadTimeout",
        "OutputTimeout",
        "PersistTimeout",
        "RequestBodyTimeout",
        "RequestBodyMinRate",
    ]


@pytest.mark.parametrize(
    ("name", "live"),
    [("Port", False), ("BindAddress", False), ("Workers", False), ("PersistTimeout", True)],
)
def test_live_or_restart(name: str, live: bool) -> None:
    assert DIRECTIVES[name].live is live


def test_defaults_are_the_documented_values() -> None:
    cfg = defaults()
    assert cfg.port == 8080
    assert cfg.persist_timeout_s == 4.0
    assert cfg.read_timeout_s == 60.0
    assert cfg.output_timeout_s == 1800.0
    assert cfg.max_persist_request == 1000
    assert cfg.max_socket_per_server == 64
    assert cfg.cache_memory_bytes == 64 << 20
    assert cfg.cache_max_expiry_s == 30 * 86_400
    assert cfg.connect_ports == (443,)
    assert cfg.mapping_rules == ()
    assert cfg.log_level == "info"
