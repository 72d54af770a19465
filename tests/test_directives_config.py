"""The directive file: loading, error messages, config_with, diff and save_changes."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from cproxy.directives import (
    Config,
    Rule,
    config_with,
    defaults,
    diff,
    load_config,
    save_changes,
)
from cproxy.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "cproxy.conf") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert "\n" not in str(err)
    assert err.path == str(path)
    return err


# --- Loading --------------------------------------------------------------------------------


def test_load_reads_values_and_keeps_defaults_for_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "# my proxy\n"
        "Port = 3128\n"
        "persisttimeout = 2 seconds   # names in any case\n"
        "CACHEMEMORY=128 M\n"
        "ProxyAccess = 10.0.0.0/8, 192.168.0.0/16\n",
    )
    cfg = load_config(path)
    assert cfg.port == 3128
    assert cfg.persist_timeout_s == 2.0
    assert cfg.cache_memory_bytes == 128 << 20
    assert cfg.proxy_access == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.0.0/16"),
    )
    assert cfg.text("PersistTimeout") == "2 seconds"
    assert cfg.text("proxyaccess") == "10.0.0.0/8 192.168.0.0/16"
    assert cfg.read_timeout_s == defaults().read_timeout_s
    assert cfg.source_path == str(path.resolve())


def test_load_unquotes_values_and_keeps_hash_inside_quotes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'Hostname = "edge"\nAccessLog = "logs/access#1.log"  # a comment\nErrorLog = \'\'\n',
    )
    cfg = load_config(path)
    assert cfg.hostname == "edge"
    assert cfg.access_log == "logs/access#1.log"
    assert cfg.error_log == ""


def test_load_reads_multi_line_mapping_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'MappingRules = """\n'
        "    Proxy  /app/*  http://127.0.0.1:9000/*\n"
        "    Fail   /private/*\n"
        '"""\n'
        "Port = 3128\n",
    )
    cfg = load_config(path)
    assert cfg.mapping_rules == (
        Rule("Proxy", "/app/*", "http://127.0.0.1:9000/*"),
        Rule("Fail", "/private/*"),
    )
    assert cfg.port == 3128


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing set\n")) == defaults()


def test_unknown_directive_suggests_the_closest(tmp_path: Path) -> None:
    err = load_error(tmp_path, "Port = 8080\n\nPersistTimout = 4 seconds\n")
    assert str(err) == (
        f"{tmp_path / 'cproxy.conf'}:3: PersistTimout: unknown directive "
        "(did you mean PersistTimeout?); allowed: the directives listed in cproxy.conf(5)"
    )
    assert (err.line, err.directive) == (3, "PersistTimout")


def test_unknown_directive_in_other_case_still_gets_a_suggestion(tmp_path: Path) -> None:
    err = load_error(tmp_path, "MAXACTIVETHREAD = 10\n")
    assert "did you mean MaxActiveThreads?" in str(err)


def test_bad_value_names_line_directive_and_what_is_allowed(tmp_path: Path) -> None:
    err = load_error(tmp_path, "# timeouts\nReadTimeout = 30\n")
    assert str(err).startswith(f"{tmp_path / 'cproxy.conf'}:2: ReadTimeout: '30' is not a time")
    assert "; allowed: a time from 1 ms to 1 day" in str(err)
    assert err.directive == "ReadTimeout"


def test_value_out_of_range(tmp_path: Path) -> None:
    err = load_error(tmp_path, "workers = 65\n")
    assert str(err) == (
        f"{tmp_path / 'cproxy.conf'}:1: Workers: 65 is out of range; "
        "allowed: a whole number from 1 to 64"
    )


def test_duplicate_directive_is_reported_at_the_second_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, "Port = 8080\nHostname = a\nPort = 8081\n")
    assert (err.line, err.directive) == (3, "Port")
    assert "given twice (first on line 1)" in str(err)


def test_duplicate_directive_in_other_case(tmp_path: Path) -> None:
    err = load_error(tmp_path, "Port = 8080\nport = 8081\n")
    assert (err.line, err.directive) == (2, "Port")
    assert "given twice (first on line 1 as Port)" in str(err)


def test_unterminated_triple_quote(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'Port = 1\nMappingRules = """\n  Fail /x/*\n')
    assert (err.line, err.directive) == (2, "MappingRules")
    assert 'not closed (no matching """)' in str(err)


def test_line_without_equals(tmp_path: Path) -> None:
    err = load_error(tmp_path, "Port = 1\nProxy /app/* http://x/*\n")
    assert err.line == 2
    assert "is not Name = value" in str(err)


def test_unbalanced_quote(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'Hostname = "edge\n')
    assert (err.line, err.directive) == (1, "Hostname")
    assert "unbalanced quote" in str(err)


def test_sections_are_rejected(tmp_path: Path) -> None:
    err = load_error(tmp_path, "Port = 1\n\n[cache]\nCaching = on\n")
    assert err.line == 3
    assert "sections ([name] lines) are not used" in str(err)


def test_rules_lines_that_contain_equals_are_not_taken_for_keys(tmp_path: Path) -> None:
    # The scanner that finds line numbers must skip the lines of a multi-line value.
    err = load_error(
        tmp_path,
        'MappingRules = """\n  Map /a?x=1 /b\n"""\nWorkers = 0\n',
    )
    assert (err.line, err.directive) == (4, "Workers")


def test_bad_mapping_rule_is_reported_with_the_rule(tmp_path: Path) -> None:
    err = load_error(tmp_path, 'MappingRules = """\n  Pass /a/* /b/*\n"""\n')
    assert (err.line, err.directive) == (1, "MappingRules")
    assert "'Pass /a/* /b/*': a rule starts with one of Proxy, Map, Redirect, Fail" in str(err)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: file not found"


def test_unreadable_file(tmp_path: Path) -> None:
    # A directory cannot be read as a file, even by root (tests may run as root, for whom
    # chmod 000 would not stop reading).
    path = tmp_path / "dir.conf"
    path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: cannot read the file: ")


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"Port = 1\nHostname = caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:2: byte 0xe9 is not UTF-8; allowed: UTF-8 text"


# --- Config ---------------------------------------------------------------------------------


def test_config_is_immutable() -> None:
    cfg = defaults()
    with pytest.raises(AttributeError, match="immutable"):
        cfg.port = 1


def test_unknown_attribute_suggests_the_real_one() -> None:
    with pytest.raises(AttributeError, match="did you mean persist_timeout_s"):
        _ = defaults().persist_timeout


def test_configs_compare_by_value_not_by_source(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "Port = 8080\n"))
    assert loaded == defaults()
    assert hash(loaded) == hash(defaults())
    assert loaded != config_with(defaults(), {"Port": "8090"})


def test_resolve_path_against_the_file_directory(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "AdminPasswordFile = secrets/passwd\nAccessLog = -\n"))
    assert cfg.resolve_path("AdminPasswordFile") == str(tmp_path.resolve() / "secrets/passwd")
    assert cfg.resolve_path("AccessLog") == "-"


def test_resolve_path_on_defaults_uses_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert defaults().resolve_path("AdminPasswordFile") == os.path.join(
        os.getcwd(), "cproxy.passwd"
    )


def test_resolve_path_keeps_absolute_paths() -> None:
    cfg = config_with(defaults(), {"AdminPasswordFile": "/etc/cproxy/passwd"})
    assert cfg.resolve_path("AdminPasswordFile") == "/etc/cproxy/passwd"


# --- config_with and diff -------------------------------------------------------------------


def test_config_with_applies_checked_changes() -> None:
    base = defaults()
    new = config_with(base, {"persisttimeout": "2 seconds", "Caching": "off"})
    assert (new.persist_timeout_s, new.caching) == (2.0, False)
    assert (base.persist_timeout_s, base.caching) == (4.0, True)
    assert diff(base, new) == ["PersistTimeout", "Caching"]
    assert diff(base, base) == []


def test_config_with_rejects_a_bad_value_and_applies_nothing() -> None:
    base = defaults()
    with pytest.raises(ConfigError) as info:
        config_with(base, {"Port": "9000", "MaxActiveThreads": "many"})
    assert info.value.directive == "MaxActiveThreads"
    assert str(info.value) == (
        "MaxActiveThreads: 'many' is not a whole number; allowed: a whole number from 1 to 100000"
    )
    assert base.port == 8080


def test_config_with_rejects_unknown_names() -> None:
    with pytest.raises(ConfigError) as info:
        config_with(defaults(), {"CacheSize": "64 M"})
    assert info.value.directive == "CacheSize"
    assert "unknown directive" in str(info.value)


def test_config_with_keeps_the_source_path(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert config_with(cfg, {"Port": "1"}).source_path == cfg.source_path


# --- save_changes ---------------------------------------------------------------------------

COMMENTED = """\
# cproxy configuration for the lab
# (keep this header)

# The listener
Port = 3128   # the squid port, for old habits

readtimeout = 90 seconds

# Timeouts below
PersistTimeout = 4 seconds
# trailing comment
"""


def test_save_changes_keeps_comments_order_and_reloads_the_new_value(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    save_changes(path, {"PersistTimeout": "2 seconds", "Port": "3129"})
    text = path.read_text()
    assert text == COMMENTED.replace("4 seconds", "2 seconds").replace(
        "Port = 3128   #", "Port = 3129  #"
    )
    cfg = load_config(path)
    assert (cfg.persist_timeout_s, cfg.port, cfg.read_timeout_s) == (2.0, 3129, 90.0)


def test_save_changes_rewrites_only_changed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    # Same value, other spelling: the user's "90 seconds" stays.
    save_changes(path, {"ReadTimeout": "1 minute 30 seconds"})
    assert path.read_text() == COMMENTED.replace("Port = 3128   #", "Port = 3128  #")


def test_save_changes_updates_a_key_spelled_in_other_case_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    save_changes(path, {"ReadTimeout": "2 minutes"})
    text = path.read_text()
    assert "readtimeout = 2 minutes\n" in text
    assert text.lower().count("readtimeout") == 1


def test_save_changes_appends_missing_directives(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    save_changes(path, {"CacheMemory": "256 M", "ProxyAccess": "10.0.0.0/8, ::1"})
    text = path.read_text()
    assert text.endswith(
        "PersistTimeout = 4 seconds\n"
        "CacheMemory = 256 M\n"
        "ProxyAccess = 10.0.0.0/8 ::1/128\n"
        "# trailing comment\n"
    )
    assert text.startswith("# cproxy configuration for the lab\n# (keep this header)\n")
    cfg = load_config(path)
    assert cfg.cache_memory_bytes == 256 << 20
    assert len(cfg.proxy_access) == 2


def test_save_changes_round_trips_rules_hashes_and_empty_values(tmp_path: Path) -> None:
    path = write(tmp_path, "Port = 1\n")
    rules = "Proxy /app/* http://127.0.0.1:9000/*\nFail /private/*"
    changes = {
        "MappingRules": rules,
        "AccessLog": "logs/a#b.log",
        "ErrorLog": "",
        "NoCaching": "http://*.example.test/* /a,b/*",
    }
    save_changes(path, changes)
    cfg = load_config(path)
    assert cfg.text("MappingRules") == rules
    assert cfg.access_log == "logs/a#b.log"
    assert cfg.error_log == ""
    assert cfg.text("NoCaching") == "http://*.example.test/* /a,b/*"
    # and once more through the writer, now that the values are in the file
    save_changes(path, {"Port": "2"})
    assert load_config(path) == config_with(defaults(), {**changes, "Port": "2"})


def test_save_changes_with_a_bad_value_leaves_the_file_untouched(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    with pytest.raises(ConfigError) as info:
        save_changes(path, {"Port": "3129", "Workers": "0"})
    assert info.value.directive == "Workers"
    assert path.read_text() == COMMENTED


def test_save_changes_refuses_a_broken_file_and_leaves_it(tmp_path: Path) -> None:
    broken = "Port = 1\nWorkerz = 2\n"
    path = write(tmp_path, broken)
    with pytest.raises(ConfigError) as info:
        save_changes(path, {"Port": "2"})
    assert info.value.line == 2
    assert path.read_text() == broken


def test_save_changes_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        save_changes(tmp_path / "nope.conf", {"Port": "1"})


def test_save_changes_replaces_atomically_and_keeps_the_mode(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    path.chmod(0o640)
    before = path.stat().st_ino
    save_changes(path, {"Port": "3129"})
    # A new inode means the file was replaced (temp file + rename), not rewritten in place.
    assert path.stat().st_ino != before
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cproxy.conf"]


def test_save_changes_keeps_crlf_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "dos.conf"
    path.write_bytes(b"# dos\r\nPort = 1\r\n")
    save_changes(path, {"Port": "2"})
    assert path.read_bytes() == b"# dos\r\nPort = 2\r\n"


def test_config_constructor_requires_every_directive() -> None:
    with pytest.raises(ValueError, match="missing"):
        Config({"Port": 1})
