"""Tests for cproxy.admin: the admin listener, its forms, status, metrics and passwords.

Each test runs a real admin listener (start_admin on 127.0.0.1 port 0) for a real
Runtime built from a directive file in tmp_path. HTTP requests are made with
``requests`` in gevent's thread pool, so the calling greenlet waits cooperatively and
the admin's greenlets keep serving. Forms are filled in the way a browser without
JavaScript would: by reading the form's inputs out of the served HTML and posting
them back with one value changed.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import gevent
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cproxy.admin import AdminServer, start_admin, templates_dir
from cproxy.admin.auth import parse_basic_authorization
from cproxy.admin.csrf import CsrfGuard, same_origin
from cproxy.admin.passwd import main as passwd_main
from cproxy.admin.passwd import set_password
from cproxy.admin.status import StatsHistory
from cproxy.directives import DIRECTIVES, load_config
from cproxy.server.runtime import Runtime

WAIT_S = 10.0  # bound on every HTTP exchange with the admin (bcrypt included)
USER, PASSWORD = "admin", "correct horse"
PERFORMANCE = "/config/server-configuration/system-management/performance"
TIMEOUTS = "/config/server-configuration/system-management/timeouts"
ROUTING = "/config/request-routing"

CONF_TEXT = """\
# cproxy test directive file
# (these comments must survive every save)

MaxPersistRequest = 100  # per client connection

# how long an idle client connection may wait
PersistTimeout = 4 seconds

MappingRules = \"\"\"
    Proxy /app/* http://127.0.0.1:9000/*
    Fail /private/*
\"\"\"
"""


def fetch(method: str, url: str, **kwargs: Any) -> requests.Response:
    """requests.request run in a real thread; this greenlet waits without blocking the hub."""
    kwargs.setdefault("timeout", WAIT_S)
    kwargs.setdefault("allow_redirects", False)
    with gevent.Timeout(WAIT_S * 2):
        return gevent.get_hub().threadpool.apply(requests.request, (method, url), kwargs)


class FormReader(HTMLParser):
    """Collects each <form>: its action and the values a browser would submit."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._form: dict[str, Any] | None = None
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self._form = {"action": a.get("action", ""), "class": a.get("class", ""), "fields": {}}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and "name" in a:
            if a.get("type") == "radio" and "checked" not in a:
                return
            self._form["fields"][a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select is not None:
            fields = self._form["fields"]
            if "selected" in a or self._select not in fields:
                fields[self._select] = a.get("value", "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self._form["fields"][self._textarea] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None and self._form is not None:
            self._form["fields"][self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def forms_in(html: str) -> list[dict[str, Any]]:
    reader = FormReader()
    reader.feed(html)
    return reader.forms


def field_section(html: str, name: str) -> str:
    """The HTML of the <section> showing directive ``name``."""
    m = re.search(rf'<section class="[^"]*" id="field-{name}">(.*?)</section>', html, re.S)
    assert m is not None, f"no field {name} on the page"
    return m.group(1)


def field_section_rules(html: str) -> str:
    """The HTML of the mapping rules editor."""
    pattern = r'<section class="rules[^"]*" id="field-MappingRules">(.*?)</section>'
    m = re.search(pattern, html, re.S)
    assert m is not None, "no rules editor on the page"
    return m.group(1)


class AdminSite:
    """A directive file, a password file, a Runtime and its running admin listener."""

    def __init__(self, tmp_path: Path, *, conf_text: str | None = CONF_TEXT) -> None:
        self.dir = tmp_path
        self.conf = tmp_path / "cproxy.conf"
        self.passwd = tmp_path / "cproxy.passwd"
        # Low bcrypt cost in tests: the cost is a parameter of the hash, not of the check.
        set_password(str(self.passwd), USER, PASSWORD, rounds=4)
        if conf_text is not None:
            self.conf.write_text(conf_text)
            self.runtime = Runtime(load_config(self.conf), config_path=str(self.conf))
        else:
            # Built-in defaults: the password file is looked for in the working directory.
            self.runtime = Runtime(load_config_defaults_in(tmp_path), config_path=None)
        server = start_admin(self.runtime, listener=("127.0.0.1", 0))
        assert server is not None
        self.server: AdminServer = server
        self.base = f"http://127.0.0.1:{server.address[1]}"

    def close(self) -> None:
        self.server.stop(timeout=1)

    def url(self, path: str) -> str:
        return self.base + path

    def get(self, path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> requests.Response:
        return fetch("GET", self.url(path), auth=auth)

    def post(
        self,
        path: str,
        data: dict[str, str],
        auth: tuple[str, str] | None = (USER, PASSWORD),
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return fetch("POST", self.url(path), data=data, auth=auth, headers=headers or {})

    def form(self, path: str, css_class: str = "config-form") -> dict[str, str]:
        """The fields of the apply form on ``path``, as the browser would submit them."""
        response = self.get(path)
        assert response.status_code == 200
        for form in forms_in(response.text):
            if css_class in form["class"]:
                return dict(form["fields"])
        raise AssertionError(f"no {css_class} form on {path}")


def load_config_defaults_in(directory: Path) -> Any:
    from cproxy.directives import config_with, defaults

    return config_with(defaults(), {"AdminPasswordFile": str(directory / "cproxy.passwd")})


@pytest.fixture
def site(tmp_path: Path) -> Iterator[AdminSite]:
    s = AdminSite(tmp_path)
    yield s
    s.close()


# ---------------------------------------------------------------------------- who


def test_no_credentials_get_401_with_basic_challenge(site: AdminSite) -> None:
    for path in ("/", PERFORMANCE, "/status.json", "/metrics"):
        response = site.get(path, auth=None)
        assert response.status_code == 401, path
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="cproxy admin"')
        assert "MaxPersistRequest" not in response.text


def test_wrong_password_gets_401_and_is_logged_with_client_address(
    site: AdminSite, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="cproxy.admin"):
        response = site.get("/", auth=(USER, "wrong"))
        unknown = site.get("/", auth=("mallory", PASSWORD))
    assert response.status_code == 401
    assert unknown.status_code == 401
    failures = [r.getMessage() for r in caplog.records if "login" in r.getMessage()]
    assert any("127.0.0.1" in m and "'admin'" in m for m in failures), failures
    assert any("127.0.0.1" in m and "'mallory'" in m for m in failures), failures
    assert site.get("/").status_code == 200


def test_client_outside_admin_access_gets_403_even_with_password(site: AdminSite) -> None:
    from cproxy.directives import config_with

    site.runtime.apply(config_with(site.runtime.config, {"AdminAccess": "10.0.0.0/8"}))
    response = site.get("/")
    assert response.status_code == 403
    assert "AdminAccess" in response.text


def test_bcrypt_runs_once_for_many_requests_with_the_same_credentials(site: AdminSite) -> None:
    verifier = site.server.app._verifier(site.runtime.config)
    before = verifier.bcrypt_runs
    for _ in range(10):
        assert site.get("/status.json").status_code == 200
    assert verifier.bcrypt_runs - before == 1
    # A wrong password is a different key: it is checked, not served from the cache.
    assert site.get("/status.json", auth=(USER, "nope")).status_code == 401
    assert verifier.bcrypt_runs - before == 2


def test_start_admin_without_password_file_refuses_and_says_how(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "cproxy.conf"
    conf.write_text("AdminPasswordFile = users.passwd\n")
    runtime = Runtime(load_config(conf), config_path=str(conf))
    with caplog.at_level(logging.WARNING, logger="cproxy.admin"):
        assert start_admin(runtime, listener=("127.0.0.1", 0)) is None
    expected = f"cproxy passwd -f {tmp_path / 'users.passwd'} admin"
    assert any(expected in r.getMessage() for r in caplog.records), caplog.text


def test_start_admin_registers_its_address_with_the_runtime(site: AdminSite) -> None:
    assert tuple(site.server.address[:2]) in site.runtime.admin_addresses


# ---------------------------------------------------------------------------- csrf


def test_forged_posts_are_refused_and_change_nothing(site: AdminSite) -> None:
    before_file = site.conf.read_bytes()
    before_config = site.runtime.config
    fields = site.form(PERFORMANCE)
    fields["d.MaxPersistRequest"] = "7"
    no_token = {k: v for k, v in fields.items() if k != "csrf"}
    bad_token = {**fields, "csrf": "0" * 64}
    other_user = {**fields, "csrf": CsrfGuard().token(USER)}  # another process's secret
    for data in (no_token, bad_token, other_user):
        response = site.post(PERFORMANCE, data)
        assert response.status_code == 403
        assert "token" in response.text
    # A valid token does not help a post that the browser says comes from elsewhere.
    for header in ({"Origin": "http://evil.test"}, {"Referer": "http://evil.test/x"}):
        response = site.post(PERFORMANCE, fields, headers=header)
        assert response.status_code == 403
    assert site.runtime.config is before_config
    assert site.conf.read_bytes() == before_file
    # The same post from the admin's own page goes through.
    response = site.post(PERFORMANCE, fields, headers={"Origin": site.base})
    assert response.status_code == 200
    assert site.runtime.config.max_persist_request == 7


def test_same_origin_rules() -> None:
    assert same_origin("127.0.0.1:8081", None, None)
    assert same_origin("127.0.0.1:8081", "http://127.0.0.1:8081", None)
    assert same_origin("localhost", "http://LOCALHOST:80", None)
    assert same_origin("127.0.0.1:8081", None, "http://127.0.0.1:8081/config/x")
    assert not same_origin("127.0.0.1:8081", "http://127.0.0.1:8082", None)
    assert not same_origin("127.0.0.1:8081", "null", None)
    assert not same_origin("127.0.0.1:8081", "http://evil.test", "http://127.0.0.1:8081/")
    assert not same_origin(None, "http://127.0.0.1:8081", None)
    assert not same_origin("127.0.0.1:8081", "javascript:alert(1)", None)


def test_basic_authorization_parsing() -> None:
    assert parse_basic_authorization("Basic YWRtaW46cHc6eA==") is not None
    creds = parse_basic_authorization("basic YWRtaW46cHc6eA==")
    assert creds is not None and (creds.user, creds.password) == ("admin", "pw:x")
    for bad in (None, "", "Bearer x", "Basic !!!", "Basic YWRtaW4=", "Basic " + "A" * 5000):
        assert parse_basic_authorization(bad) is None


# ---------------------------------------------------------------------------- forms


def test_invalid_value_is_shown_next_to_its_field_and_nothing_changes(site: AdminSite) -> None:
    before_file = site.conf.read_bytes()
    fields = site.form(TIMEOUTS)
    fields["d.PersistTimeout"] = "soon"
    fields["d.ReadTimeout"] = "7 minutes"  # valid, but must not be applied either
    response = site.post(TIMEOUTS, fields)
    assert response.status_code == 400
    assert "correct PersistTimeout below" in response.text
    section = field_section(response.text, "PersistTimeout")
    assert 'class="error"' in section and "soon" in section
    assert 'aria-invalid="true"' in section
    assert 'class="error"' not in field_section(response.text, "ReadTimeout")
    # The submitted values are shown again so the user can correct them.
    redisplayed = forms_in(response.text)[0]["fields"]
    assert redisplayed["d.PersistTimeout"] == "soon"
    assert site.runtime.config.persist_timeout_s == 4.0
    assert site.runtime.config.text("ReadTimeout") != "7 minutes"
    assert site.conf.read_bytes() == before_file


def test_valid_change_is_applied_and_saved_with_comments_kept(site: AdminSite) -> None:
    fields = site.form(TIMEOUTS)
    fields["d.PersistTimeout"] = "1 minute 30 seconds"
    response = site.post(TIMEOUTS, fields)
    assert response.status_code == 200
    assert "Applied now: PersistTimeout" in response.text
    assert site.runtime.config.persist_timeout_s == 90.0
    text = site.conf.read_text()
    assert "# (these comments must survive every save)" in text
    assert "# how long an idle client connection may wait" in text
    assert "# per client connection" in text
    assert re.search(r"^PersistTimeout = 1 minute 30 seconds$", text, re.M)
    assert load_config(site.conf).persist_timeout_s == 90.0
    # The page now shows the new value as the running one.
    assert site.form(TIMEOUTS)["d.PersistTimeout"] == "1 minute 30 seconds"


def test_unchanged_form_changes_nothing(site: AdminSite) -> None:
    before_file = site.conf.read_bytes()
    before_config = site.runtime.config
    response = site.post(TIMEOUTS, site.form(TIMEOUTS))
    assert response.status_code == 200
    assert "unchanged" in response.text
    assert site.runtime.config is before_config
    assert site.conf.read_bytes() == before_file


def test_restart_only_directive_is_marked_on_the_form_and_after_apply(site: AdminSite) -> None:
    page = site.get(PERFORMANCE).text
    assert 'class="badge restart"' in field_section(page, "ListenBacklog")
    assert 'class="badge restart"' not in field_section(page, "MaxPersistRequest")
    fields = site.form(PERFORMANCE)
    fields["d.ListenBacklog"] = "64"
    fields["d.MaxActiveThreads"] = "50"
    response = site.post(PERFORMANCE, fields)
    assert response.status_code == 200
    assert "takes effect at restart: ListenBacklog." in response.text
    assert "Applied now: MaxActiveThreads." in response.text
    assert "waiting for a restart: ListenBacklog" in site.get("/").text
    assert "ListenBacklog = 64" in site.conf.read_text()


def test_stale_form_is_refused_not_merged(site: AdminSite) -> None:
    first = site.form(PERFORMANCE)
    second = site.form(PERFORMANCE)  # another tab, loaded at the same time
    first["d.MaxPersistRequest"] = "10"
    assert site.post(PERFORMANCE, first).status_code == 200
    second["d.MaxActiveThreads"] = "42"
    response = site.post(PERFORMANCE, second)
    assert response.status_code == 409
    assert "changed" in response.text and "after you loaded it" in response.text
    assert site.runtime.config.max_active_threads != 42
    assert site.runtime.config.max_persist_request == 10
    # The refusal shows the current values, so the user can redo the change on them.
    assert forms_in(response.text)[0]["fields"]["d.MaxPersistRequest"] == "10"


def test_change_on_built_in_defaults_is_live_only(tmp_path: Path) -> None:
    site = AdminSite(tmp_path, conf_text=None)
    try:
        fields = site.form(PERFORMANCE)
        fields["d.MaxPersistRequest"] = "9"
        response = site.post(PERFORMANCE, fields)
        assert response.status_code == 200
        assert "live only" in response.text
        assert site.runtime.config.max_persist_request == 9
        assert not site.conf.exists()
    finally:
        site.close()


def test_every_directive_appears_on_exactly_one_form(site: AdminSite) -> None:
    home = site.get("/").text
    links = sorted(set(re.findall(r'href="(/config/[^"]+)"', home)))
    assert links, "no form links in the navigation"
    seen: dict[str, list[str]] = {name: [] for name in DIRECTIVES}
    for link in links:
        page = site.get(link)
        assert page.status_code == 200, link
        for name in re.findall(r'id="field-([A-Za-z0-9]+)"', page.text):
            seen[name].append(link)
    assert {name: pages for name, pages in seen.items() if len(pages) != 1} == {}
    # Each field shows the directive's own help and default; a time's text carries its unit.
    page = site.get(TIMEOUTS).text
    section = field_section(page, "PersistTimeout")
    assert DIRECTIVES["PersistTimeout"].doc.split("\n")[0] in section.replace("&#39;", "'")
    assert 'value="4 seconds"' in section and 'class="unit"' not in section
    assert "Default:" in section


def test_navigation_tree_nests_forms_like_the_caching_proxy(site: AdminSite) -> None:
    html = site.get("/").text
    nav = html[html.index('<nav class="sidebar"') : html.index("</nav>")]
    server = nav.index(">Server Configuration<")
    system = nav.index(">System Management<")
    performance = nav.index(f'href="{PERFORMANCE}"')
    assert server < system < performance


def test_mapping_rules_add_move_remove_without_javascript(site: AdminSite) -> None:
    def rule_forms(action: str) -> list[dict[str, str]]:
        html = site.get(ROUTING).text
        return [f["fields"] for f in forms_in(html) if f["fields"].get("action") == action]

    add = rule_forms("rule-add")[0]
    add.update({"rule.kind": "Redirect", "rule.pattern": "/old/*", "rule.target": "/new/*"})
    add["position"] = "1"
    assert site.post(ROUTING, add).status_code == 200
    assert [str(r) for r in site.runtime.config.mapping_rules] == [
        "Redirect /old/* /new/*",
        "Proxy /app/* http://127.0.0.1:9000/*",
        "Fail /private/*",
    ]
    down = rule_forms("rule-down")[0]  # the first rule's "down" button
    assert site.post(ROUTING, down).status_code == 200
    assert str(site.runtime.config.mapping_rules[1]) == "Redirect /old/* /new/*"
    remove = rule_forms("rule-remove")[2]
    assert site.post(ROUTING, remove).status_code == 200
    assert [str(r) for r in site.runtime.config.mapping_rules] == [
        "Proxy /app/* http://127.0.0.1:9000/*",
        "Redirect /old/* /new/*",
    ]
    saved = load_config(site.conf)
    assert saved.mapping_rules == site.runtime.config.mapping_rules
    assert "# (these comments must survive every save)" in site.conf.read_text()


def test_invalid_mapping_rule_is_refused_with_its_message(site: AdminSite) -> None:
    before_file = site.conf.read_bytes()
    html = site.get(ROUTING).text
    add = next(f["fields"] for f in forms_in(html) if f["fields"].get("action") == "rule-add")
    add.update({"rule.kind": "Proxy", "rule.pattern": "/x/*", "rule.target": "ftp://nope/*"})
    response = site.post(ROUTING, add)
    assert response.status_code == 400
    assert "Rule not added" in response.text
    assert "the target must be an http:// or https:// URL" in field_section_rules(response.text)
    assert 'value="ftp://nope/*"' in response.text  # the draft is kept for correction
    assert len(site.runtime.config.mapping_rules) == 2
    assert site.conf.read_bytes() == before_file


def test_stale_rule_move_is_refused(site: AdminSite) -> None:
    html = site.get(ROUTING).text
    down = next(f["fields"] for f in forms_in(html) if f["fields"].get("action") == "rule-down")
    remove = [f["fields"] for f in forms_in(html) if f["fields"].get("action") == "rule-remove"]
    assert site.post(ROUTING, remove[1]).status_code == 200
    assert site.post(ROUTING, down).status_code == 409
    assert [str(r) for r in site.runtime.config.mapping_rules] == [
        "Proxy /app/* http://127.0.0.1:9000/*"
    ]


# ---------------------------------------------------------------------------- status


def test_sampler_records_history_while_the_admin_runs(site: AdminSite) -> None:
    assert site.get("/status.json").status_code == 200  # lets the sampler greenlet run
    assert len(site.server.app.history) >= 1
    site.server.stop_sampler()


def test_status_json_and_page_show_the_runtime_figures(site: AdminSite) -> None:
    site.server.stop_sampler()
    now = [0.0]
    history = site.server.app.history = StatsHistory(clock=lambda: now[0])
    site.runtime.requests_total = 40
    history.record(site.runtime.stats())
    site.runtime.requests_total = 100
    now[0] += 5.0
    history.record(site.runtime.stats())
    doc = site.get("/status.json").json()
    assert doc["requests_total"] == 100
    assert set(doc["connections"]) == {"active", "waiting"}
    assert doc["series"] == [{"age_s": 0.0, "rps": 12.0, "hit_ratio": None}]
    assert doc["requests_per_s"] == 12.0
    assert "pool" in doc and "origins" in doc["pool"]
    page = site.get("/").text
    assert 'data-stat="requests_total"' in page
    assert '<script src="/static/status.js"' in page


def test_history_rates_with_a_fake_clock() -> None:
    now = [100.0]
    history = StatsHistory(maxlen=3, clock=lambda: now[0])
    for requests_total, hits, misses in ((0, 0, 0), (50, 3, 1), (150, 3, 1), (160, 5, 5)):
        history.record(
            {"requests_total": requests_total, "cache": {"hits": hits, "misses": misses}}
        )
        now[0] += 5.0
    assert len(history) == 3  # bounded: the oldest sample fell out
    series = history.series()
    assert [p["rps"] for p in series] == [20.0, 2.0]
    assert [p["hit_ratio"] for p in series] == [None, 2 / 6]
    assert [p["age_s"] for p in series] == [-5.0, 0.0]


def test_metrics_parse_as_prometheus_text(site: AdminSite) -> None:
    site.runtime.requests_total = 12
    response = site.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    assert families["cproxy_requests"].samples[0].value == 12
    assert "cproxy_connections_active" in families
    assert "python_gc_objects_collected" not in families  # not the global registry


def test_metrics_include_cache_and_per_origin_pool_figures() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from cproxy.admin.status import RuntimeCollector

    stats = {
        "connections": {"active": 2, "waiting": 1},
        "requests_total": 5,
        "cache": {
            "objects": 3,
            "bytes": 10,
            "max_bytes": 100,
            "hits": 4,
            "misses": 1,
            "evictions": 0,
        },
        "pool": {
            "origins": {
                ("http", "a.test", 80): {
                    "idle": 1,
                    "in_use": 0,
                    "created": 2,
                    "reused": 7,
                    "expired": 1,
                }
            }
        },
    }
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(lambda: stats))
    text = generate_latest(registry).decode()
    samples = {
        (s.name, s.labels.get("origin")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("cproxy_cache_hits_total", None)] == 4
    assert samples[("cproxy_origin_pool_reused_total", "http://a.test:80")] == 7
    assert samples[("cproxy_origin_pool_idle", "http://a.test:80")] == 1


def test_static_files_are_served_and_paths_are_confined(site: AdminSite) -> None:
    css = site.get("/static/admin.css", auth=None)
    assert css.status_code == 200 and css.headers["Content-Type"].startswith("text/css")
    for bad in ("/static/..%2fbase.html", "/static/x/admin.css", "/static/nope.css"):
        assert site.get(bad, auth=None).status_code == 404, bad


def test_wrong_method_gets_405_with_allow(site: AdminSite) -> None:
    response = fetch("DELETE", site.url(PERFORMANCE), auth=(USER, PASSWORD))
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD, POST"
    assert fetch("POST", site.url("/metrics"), auth=(USER, PASSWORD)).status_code == 405


def test_pages_carry_a_strict_content_security_policy(site: AdminSite) -> None:
    response = site.get(PERFORMANCE)
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "<script>" not in response.text and "style=" not in response.text


def test_templates_dir_finds_web_admin_in_the_checkout() -> None:
    assert (templates_dir() / "base.html").is_file()
    assert (templates_dir() / "static" / "status.js").is_file()


# ---------------------------------------------------------------------------- passwd


def test_passwd_creates_then_updates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    assert passwd_main(["-f", str(path), "admin"], stdin=io.StringIO("first pw\n")) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("admin:$2")
    assert passwd_main(["-f", str(path), "bob"], stdin=io.StringIO("bob pw\n")) == 0
    assert passwd_main(["-f", str(path), "admin"], stdin=io.StringIO("second pw\n")) == 0
    lines = path.read_text().splitlines()
    assert [line.split(":")[0] for line in lines] == ["admin", "bob"]

    import bcrypt

    admin_hash = lines[0].split(":", 1)[1].encode()
    assert bcrypt.checkpw(b"second pw", admin_hash)
    assert not bcrypt.checkpw(b"first pw", admin_hash)


def test_passwd_update_takes_effect_in_the_running_admin(site: AdminSite) -> None:
    assert site.get("/").status_code == 200
    stdin = io.StringIO("new password\n")
    assert passwd_main(["-f", str(site.passwd), USER], stdin=stdin) == 0
    assert site.get("/", auth=(USER, PASSWORD)).status_code == 401
    assert site.get("/", auth=(USER, "new password")).status_code == 200


def test_passwd_refuses_mismatch_on_a_tty_and_empty_passwords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users"

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert passwd_main(["-f", str(path), "admin"], stdin=Tty()) == 1
    assert not path.exists()
    assert passwd_main(["-f", str(path), "admin"], stdin=io.StringIO("\n")) == 1
    assert passwd_main(["-f", str(path), "a:b"], stdin=io.StringIO("pw\n")) == 2
    assert not path.exists()


def test_cproxy_passwd_command_reads_the_password_from_stdin(tmp_path: Path) -> None:
    path = tmp_path / "cproxy.passwd"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    result = subprocess.run(
        [sys.executable, "-m", "cproxy", "passwd", "-f", str(path), "admin"],
        input="from stdin\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    import bcrypt

    hashed = path.read_text().strip().split(":", 1)[1].encode()
    assert bcrypt.checkpw(b"from stdin", hashed)


# ---------------------------------------------------------------------- freshness rules

CACHE_SETTINGS = "/config/cache-configuration/cache-settings"


def test_freshness_rules_are_edited_like_mapping_rules(site: AdminSite) -> None:
    def rule_forms(action: str) -> list[dict[str, Any]]:
        html = site.get(CACHE_SETTINGS).text
        return [
            f["fields"]
            for f in forms_in(html)
            if f["fields"].get("action") == action
            and f["fields"].get("directive") == "CacheFreshnessRules"
        ]

    html = site.get(CACHE_SETTINGS).text
    assert 'id="field-CacheFreshnessRules"' in html and "CacheMinHold" in html
    add = rule_forms("rule-add")[0]
    add.update({"rule.kind": "CacheMinHold", "rule.pattern": "*.iso", "rule.target": "7 days"})
    assert site.post(CACHE_SETTINGS, add).status_code == 200
    add = rule_forms("rule-add")[0]
    add.update(
        {"rule.kind": "CacheDefaultExpiry", "rule.pattern": "*/favicon.ico"}
        | {"rule.target": "1 day errors", "position": "1"}
    )
    assert site.post(CACHE_SETTINGS, add).status_code == 200
    assert [str(r) for r in site.runtime.config.cache_freshness_rules] == [
        "CacheDefaultExpiry */favicon.ico 1 day errors",
        "CacheMinHold *.iso 7 days",
    ]
    assert load_config(site.conf).cache_freshness_rules == (
        site.runtime.config.cache_freshness_rules
    )
    remove = rule_forms("rule-remove")[0]
    assert site.post(CACHE_SETTINGS, remove).status_code == 200
    assert [str(r) for r in site.runtime.config.cache_freshness_rules] == [
        "CacheMinHold *.iso 7 days"
    ]


def test_a_bad_freshness_rule_is_refused_and_nothing_changes(site: AdminSite) -> None:
    before_file = site.conf.read_bytes()
    before = site.runtime.config
    html = site.get(CACHE_SETTINGS).text
    add = next(
        f["fields"]
        for f in forms_in(html)
        if f["fields"].get("action") == "rule-add"
        and f["fields"].get("directive") == "CacheFreshnessRules"
    )
    add.update({"rule.kind": "CacheMinHold", "rule.pattern": "*.iso", "rule.target": "7"})
    response = site.post(CACHE_SETTINGS, add)
    assert response.status_code == 400
    assert "Rule not added" in response.text
    section = re.search(r'id="field-CacheFreshnessRules">(.*?)</section>', response.text, re.S)
    assert section is not None and "is not a time" in section.group(1)
    assert site.runtime.config == before
    assert site.conf.read_bytes() == before_file
