"""The admin WSGI application: status page, metrics and the configuration forms.

Every request goes through the same gate, in this order:

1. the client address must be in ``AdminAccess`` (else 403, before any credentials are
   looked at);
2. the Host field must name the admin (localhost, Hostname, AdminHostNames, one of its
   addresses; else 421: DNS rebinding, see hosts.py);
3. static files (CSS, JavaScript) are then served without credentials: they are public;
4. HTTP Basic against the password file (else 401; wrong passwords are logged with the
   client address, and an address with too many failures gets 429 for a while without
   its password being checked: see auth.LoginThrottle);
5. a POST must be url-encoded, carry the user's CSRF token and, when the browser names
   its origin, come from the admin's own host and port (else 403, nothing changed).

Routes::

    GET  /                      status page (figures refreshed by /static/status.js)
    GET  /status.json           the status figures and the recent history, as JSON
    GET  /metrics               Prometheus text format
    GET  /config                redirect to the first form
    GET  /config/<form path>    a configuration form
    POST /config/<form path>    action=apply: apply the form;
                                action=rule-add/rule-remove/rule-up/rule-down: edit a
                                mapping rule list (one small form per button, no JS)
    GET  /ca                    the HTTPS interception CA: fingerprint, validity
    GET  /ca/cproxy-ca.pem      its certificate (PEM; .der: DER), never the key
    GET  /static/<file>         CSS and JavaScript from web_admin/static

Applying a form parses every value with the registry's types (``config_with``); any
error redisplays the form with the message next to the field and changes nothing.
Otherwise the new Config goes to ``runtime.apply`` and the changed directives are
written to the directive file with ``save_changes``. A form carries the generation
(fingerprint of its values) it was rendered from; a post built on values that have
changed since is refused (409), never merged.
"""

from __future__ import annotations

import http
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import gevent.lock
import jinja2
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from cproxy import __version__
from cproxy.admin import auth
from cproxy.admin.capage import DOWNLOADS, ca_view
from cproxy.admin.csrf import CsrfGuard, same_origin
from cproxy.admin.forms import (
    FormPage,
    FormTree,
    build_fields,
    build_form_tree,
    generation,
    widget_for,
)
from cproxy.admin.hosts import admin_host_allowed
from cproxy.admin.paths import password_file_path, static_dir, templates_dir
from cproxy.admin.status import (
    ConfigCollector,
    RuntimeCollector,
    StatsHistory,
    status_snapshot,
)
from cproxy.directives.config import config_with, diff, load_config, save_changes
from cproxy.directives.registry import DIRECTIVES, forms
from cproxy.directives.types import RuleList
from cproxy.errors import ConfigError

log = logging.getLogger("cproxy.admin")

# A form post is a few kilobytes; a long rule list stays far below this.
MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 500
REALM = "cproxy admin"

_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.(css|js|svg|ico)")
_STATIC_TYPES = {
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
    "ico": "image/x-icon",
}
# No inline script or style anywhere: the pages work under a strict policy, and a page of
# the admin can never be framed by another site (clickjacking on the Apply buttons).
_SECURITY_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
]


class RuntimeLike(Protocol):
    """What the admin needs of cproxy.server.runtime.Runtime."""

    @property
    def config(self) -> Any: ...

    @property
    def config_path(self) -> str | None: ...

    def apply(self, new_config: Any) -> list[str]: ...

    def stats(self) -> dict[str, Any]: ...

    def propagate(self) -> bool: ...


@dataclass
class Response:
    """A response before it is handed to start_response."""

    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)


class HTTPProblem(Exception):
    """Stop handling and answer with ``status`` and a short plain message."""

    def __init__(
        self, status: int, message: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []


@dataclass
class Outcome:
    """What happened to a form post, for the page shown afterwards."""

    status: int = 200
    messages: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)
    errors: dict[str, str] = field(default_factory=dict)  # directive name -> message
    submitted: dict[str, str] | None = None  # values to redisplay after an error
    rule_draft: dict[str, str] = field(default_factory=dict)  # a rejected new rule


class AdminApp:
    """The admin WSGI application for one Runtime.

    ``history`` is the ring of status samples (server.py fills it from a greenlet);
    ``csrf_secret`` may be fixed by tests. Everything else comes from the runtime's
    current Config at each request, so AdminAccess and the password file follow edits.
    """

    def __init__(
        self,
        runtime: RuntimeLike,
        *,
        history: StatsHistory | None = None,
        csrf_secret: bytes | None = None,
        login_throttle: auth.LoginThrottle | None = None,
    ) -> None:
        self.runtime = runtime
        self.history = history if history is not None else StatsHistory()
        self.csrf = CsrfGuard(csrf_secret)
        self.forms: FormTree = build_form_tree(forms())
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir())),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["fmt"] = format_figure
        self.static = static_dir()
        self.metrics_registry = CollectorRegistry(auto_describe=False)
        self.metrics_registry.register(RuntimeCollector(runtime.stats, self.history))
        self.metrics_registry.register(ConfigCollector(self._pending_restart, self._file_problem))
        self._verifiers: dict[Path, auth.PasswordVerifier] = {}
        self.login_throttle = login_throttle if login_throttle is not None else auth.LoginThrottle()
        # Form posts are applied one at a time: the generation check and the apply must
        # not interleave with another admin's post.
        self._apply_lock = gevent.lock.RLock()
        self._boot_config = runtime.config
        self._restart_names: set[str] = set()

    # ------------------------------------------------------------------ WSGI entry

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        try:
            response = self._handle(environ)
        except HTTPProblem as problem:
            response = self._problem(problem.status, problem.message)
            response.headers.extend(problem.headers)
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            *_SECURITY_HEADERS,
            *response.headers,
        ]
        if not any(name == "Cache-Control" for name, _ in response.headers):
            headers.append(("Cache-Control", "no-store"))
        phrase = http.HTTPStatus(response.status).phrase
        start_response(f"{response.status} {phrase}", headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            return [b""]
        return [response.body]

    def _handle(self, environ: dict[str, Any]) -> Response:
        client = environ.get("REMOTE_ADDR") or ""
        config = self.runtime.config
        if not auth.client_allowed(client, config.admin_access):
            log.warning("admin request from %s refused: not in AdminAccess", client)
            raise HTTPProblem(403, "Your address may not use the cproxy admin (AdminAccess).")

        self._check_host(environ, config, client)
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/static/"):
            self._require_method(method, ("GET", "HEAD"))
            return self._static(path.removeprefix("/static/"))

        user = self._authenticate(environ, config, client)
        if user is None:
            return Response(
                401,
                self._plain_page("Login required", "Log in with your cproxy admin user."),
                headers=[("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')],
            )

        if path in ("/", "/status"):
            self._require_method(method, ("GET", "HEAD"))
            return self._status_page(user)
        if path == "/status.json":
            self._require_method(method, ("GET", "HEAD"))
            body = json.dumps(self._status_document()).encode()
            return Response(200, body, "application/json")
        if path == "/metrics":
            self._require_method(method, ("GET", "HEAD"))
            return Response(200, generate_latest(self.metrics_registry), CONTENT_TYPE_LATEST)
        if path in ("/ca", "/ca/"):
            self._require_method(method, ("GET", "HEAD"))
            return self._ca_page(user)
        if path.startswith("/ca/"):
            self._require_method(method, ("GET", "HEAD"))
            return self._ca_download(path.removeprefix("/ca/"))
        if path in ("/config", "/config/"):
            self._require_method(method, ("GET", "HEAD"))
            first = next(iter(self.forms.pages.values()))
            return Response(303, b"", headers=[("Location", first.url)])
        if path.startswith("/config/"):
            page = self.forms.pages.get(path.removeprefix("/config/").strip("/"))
            if page is None:
                raise HTTPProblem(404, "No such configuration form.")
            self._require_method(method, ("GET", "HEAD", "POST"))
            if method == "POST":
                form = self._read_post(environ, user)
                return self._post_form(page, user, form)
            return self._form_page(page, user, Outcome())
        raise HTTPProblem(404, "Not found.")

    # ------------------------------------------------------------------ gate

    @staticmethod
    def _require_method(method: str, allowed: tuple[str, ...]) -> None:
        if method not in allowed:
            allow = [("Allow", ", ".join(allowed))]
            raise HTTPProblem(405, f"Method {method} not allowed here.", allow)

    def _check_host(self, environ: dict[str, Any], config: Any, client: str) -> None:
        """421 unless the Host field names this admin (DNS rebinding; see hosts.py)."""
        header = environ.get("HTTP_HOST")
        bound = [host for host, _ in getattr(self.runtime, "admin_addresses", [])]
        names = (config.hostname, *config.admin_host_names)
        if not admin_host_allowed(header, names=names, listening_on=bound):
            log.warning("admin request from %s refused: Host %r is not the admin's", client, header)
            raise HTTPProblem(
                421,
                "This is the cproxy admin: it answers only to its own names "
                "(localhost, Hostname, AdminHostNames) and addresses.",
            )

    def _verifier(self, config: Any) -> auth.PasswordVerifier:
        path = password_file_path(config)
        verifier = self._verifiers.get(path)
        if verifier is None:
            verifier = auth.PasswordVerifier(auth.PasswordFile(path))
            self._verifiers = {path: verifier}  # AdminPasswordFile changed: drop the old
        return verifier

    def _authenticate(self, environ: dict[str, Any], config: Any, client: str) -> str | None:
        header = environ.get("HTTP_AUTHORIZATION")
        if header is None:
            return None
        throttle = self.login_throttle
        wait_s = throttle.retry_after_s(client)
        if wait_s > 0:
            # Locked out: no password is even looked at, right or wrong.
            raise HTTPProblem(
                429,
                "Too many failed logins from your address: try again later.",
                [("Retry-After", str(math.ceil(wait_s)))],
            )
        credentials = auth.parse_basic_authorization(header)
        if credentials is None:
            log.warning("admin login from %s failed: malformed Authorization header", client)
            throttle.failed(client)
            return None
        if not self._verifier(config).verify(credentials.user, credentials.password):
            log.warning("admin login from %s failed for user %r", client, credentials.user)
            throttle.failed(client)
            return None
        throttle.succeeded(client)
        return credentials.user

    def _read_post(self, environ: dict[str, Any], user: str) -> dict[str, str]:
        ctype = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise HTTPProblem(415, "Forms must be posted as application/x-www-form-urlencoded.")
        body = environ["wsgi.input"].read(MAX_FORM_BYTES + 1)
        if len(body) > MAX_FORM_BYTES:
            raise HTTPProblem(413, "Form too large.")
        try:
            pairs = parse_qsl(
                body.decode("utf-8"),
                keep_blank_values=True,
                strict_parsing=False,
                max_num_fields=MAX_FORM_FIELDS,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise HTTPProblem(400, f"Malformed form: {exc}") from exc
        form: dict[str, str] = {}
        for key, value in pairs:
            # Browsers send text area lines as CRLF; directive values use LF.
            form.setdefault(key, value.replace("\r\n", "\n"))
        client = environ.get("REMOTE_ADDR")
        if not self.csrf.valid(user, form.get("csrf")):
            log.warning("admin post from %s refused: missing or invalid CSRF token", client)
            raise HTTPProblem(403, "Form refused: the form token is missing or invalid.")
        if not same_origin(
            environ.get("HTTP_HOST"), environ.get("HTTP_ORIGIN"), environ.get("HTTP_REFERER")
        ):
            log.warning("admin post from %s refused: Origin/Referer is another site", client)
            raise HTTPProblem(403, "Form refused: it was not sent from this admin page.")
        return form

    # ------------------------------------------------------------------ forms

    def _post_form(self, page: FormPage, user: str, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        with self._apply_lock:
            config = self.runtime.config
            if form.get("generation") != generation(config, page.names()):
                outcome = Outcome(
                    409,
                    [
                        (
                            "error",
                            "Not applied: this form was changed (by another admin or in "
                            "another tab) after you loaded it. The current values are shown "
                            "below; make your change again.",
                        )
                    ],
                )
            elif action == "apply":
                outcome = self._apply_form(page, user, form)
            elif action in _RULE_ACTIONS:
                outcome = self._edit_rules(page, user, form, action)
            else:
                raise HTTPProblem(400, f"Unknown form action {action!r}.")
        return self._form_page(page, user, outcome)

    def _apply_form(self, page: FormPage, user: str, form: dict[str, str]) -> Outcome:
        config = self.runtime.config
        submitted: dict[str, str] = {}
        for directive in page.directives:
            if widget_for(directive) == "rules":
                continue  # edited rule by rule, never through the Apply button
            text = form.get(f"d.{directive.name}")
            if text is None:
                raise HTTPProblem(400, f"The form lacks the field {directive.name}.")
            submitted[directive.name] = text.strip()
        return self._apply_changes(user, config, submitted)

    def _apply_changes(
        self, user: str, config: Any, submitted: dict[str, str], *, redisplay: bool = True
    ) -> Outcome:
        changes = {name: text for name, text in submitted.items() if text != config.text(name)}
        errors: dict[str, str] = {}
        for name, text in changes.items():
            try:
                DIRECTIVES[name].type.parse(text)
            except ValueError as exc:
                errors[name] = str(exc)
        new = None
        if not errors:
            try:
                new = config_with(config, changes)
                if _CA_DIRECTIVES & changes.keys():
                    # The checks cproxy makes at start, so a CA the proxy would refuse at
                    # its next restart is refused here, next to its field.
                    from cproxy.intercept.ca import ca_from_config

                    ca_from_config(new)
            except ConfigError as exc:
                new = None
                errors[exc.directive or ""] = exc.message
        if new is None:
            form_error = errors.pop("", None)
            marked = ", ".join(errors)
            problems = [("error", f"Nothing was changed: correct {marked} below.")]
            if form_error is not None:
                problems = [("error", f"Nothing was changed: {form_error}")]
            return Outcome(400, problems, errors, submitted if redisplay else None)

        changed = diff(config, new)
        if not changed:
            return Outcome(200, [("info", "Nothing to apply: the values are unchanged.")])
        restart = set(self.runtime.apply(new))
        self._restart_names |= restart
        for name in changed:
            log.info(
                "admin user %s changed %s from %r to %r",
                user,
                name,
                config.text(name),
                new.text(name),
            )
        live = [name for name in changed if name not in restart]
        messages: list[tuple[str, str]] = []
        if live:
            messages.append(("ok", "Applied now: " + ", ".join(live) + "."))
        if restart:
            names = ", ".join(name for name in changed if name in restart)
            messages.append(("warn", f"Saved, takes effect at restart: {names}."))
        messages.append(self._save(new, changed))
        return Outcome(200, messages)

    def _save(self, new: Any, changed: list[str]) -> tuple[str, str]:
        path = self.runtime.config_path
        if path is None:
            return (
                "warn",
                "cproxy runs on built-in defaults (no directive file): the change is live "
                "only and will be lost at restart.",
            )
        try:
            save_changes(path, {name: new.text(name) for name in changed})
        except (OSError, ConfigError) as exc:
            log.error("admin could not save %s: %s", path, exc)
            return ("error", f"Applied to the running proxy, but saving to {path} failed: {exc}")
        if self.runtime.propagate():
            return ("info", f"Written to {path}; the other workers are re-reading it.")
        return ("info", f"Written to {path}.")

    def _edit_rules(self, page: FormPage, user: str, form: dict[str, str], action: str) -> Outcome:
        config = self.runtime.config
        name = form.get("directive", "")
        if name not in page.names() or widget_for(DIRECTIVES[name]) != "rules":
            raise HTTPProblem(400, "No such rule list on this form.")
        directive = DIRECTIVES[name]
        rule_type = directive.type
        assert isinstance(rule_type, RuleList)  # widget_for said "rules"
        rules: list[Any] = list(getattr(config, directive.attr))
        if action == "rule-add":
            draft = {key: form.get(f"rule.{key}", "").strip() for key in _RULE_FIELDS}
            line = " ".join(draft[key] for key in _RULE_FIELDS if draft[key])
            try:
                rule = rule_type.parse_line(line)
            except ValueError as exc:
                outcome = Outcome(400, [("error", "Rule not added; nothing was changed.")])
                outcome.errors[name] = str(exc)
                outcome.rule_draft = draft
                return outcome
            position = _int_field(form, "position", len(rules) + 1)
            rules.insert(min(max(position, 1), len(rules) + 1) - 1, rule)
        else:
            index = _int_field(form, "index", -1)
            if not 0 <= index < len(rules):
                raise HTTPProblem(400, "No such rule.")
            if action == "rule-remove":
                del rules[index]
            else:
                other = index - 1 if action == "rule-up" else index + 1
                if not 0 <= other < len(rules):
                    raise HTTPProblem(400, "That rule cannot move further.")
                rules[index], rules[other] = rules[other], rules[index]
        text = directive.type.format(tuple(rules))
        return self._apply_changes(user, config, {name: text}, redisplay=False)

    # ------------------------------------------------------------------ pages

    def _pending_restart(self) -> list[str]:
        """Directives changed through the admin that wait for a restart to take effect."""
        changed = diff(self._boot_config, self.runtime.config)
        return [name for name in changed if name in self._restart_names]

    def _common(self, user: str, active: str) -> dict[str, Any]:
        return {
            "nav": self.forms.nav,
            "active": active,
            "user": user,
            "csrf": self.csrf.token(user),
            "version": __version__,
            "config_path": self.runtime.config_path,
            "proxy_addresses": _addresses(getattr(self.runtime, "proxy_addresses", None)),
            "pending_restart": self._pending_restart(),
            "file_problem": self._file_problem(),
        }

    def _file_problem(self) -> str | None:
        """What is wrong with the directive file on disk, and what that means, or None.

        The running configuration may be fine while the file has been broken by hand since:
        say so on every page, before an admin applies a change that cannot be saved."""
        path = self.runtime.config_path
        if path is None:
            return None
        try:
            load_config(path)
        except ConfigError as exc:
            return (
                f"The directive file on disk does not load: {exc}. Until it is fixed, changes "
                "applied here take effect in the running proxy but cannot be saved; a SIGHUP "
                "keeps the running configuration, and once the file is fixed the next SIGHUP "
                "or restart takes its values, so changes made here meanwhile are lost."
            )
        return None

    def _render(self, template: str, http_status: int, **context: Any) -> Response:
        body = self.env.get_template(template).render(**context).encode("utf-8")
        return Response(http_status, body)

    def _form_page(self, page: FormPage, user: str, outcome: Outcome) -> Response:
        config = self.runtime.config
        fields = build_fields(page, config, outcome.submitted, outcome.errors)
        rules = {
            f.name: list(getattr(config, f.directive.attr)) for f in fields if f.widget == "rules"
        }
        return self._render(
            "form.html",
            outcome.status,
            **self._common(user, page.url),
            page=page,
            title=" \u203a ".join(page.path),
            fields=fields,
            plain_fields=[f for f in fields if f.widget != "rules"],
            rule_fields=[f for f in fields if f.widget == "rules"],
            rules=rules,
            rule_draft=outcome.rule_draft,
            generation=generation(config, page.names()),
            messages=outcome.messages,
        )

    def _status_document(self) -> dict[str, Any]:
        document = status_snapshot(self.runtime.stats(), self.history)
        document["pending_restart"] = self._pending_restart()
        document["directive_file_problem"] = self._file_problem()
        return document

    def _status_page(self, user: str) -> Response:
        return self._render(
            "status.html",
            200,
            **self._common(user, "/"),
            title="Status",
            status=self._status_document(),
        )

    def _ca_page(self, user: str) -> Response:
        return self._render(
            "ca.html",
            200,
            **self._common(user, "/ca"),
            title="Interception CA",
            ca=ca_view(self.runtime.config),
        )

    def _ca_download(self, name: str) -> Response:
        """The CA certificate only: the view is built from SSLCACertFile, never the key."""
        if name not in DOWNLOADS:
            raise HTTPProblem(404, "Not found.")
        view = ca_view(self.runtime.config)
        if not view.configured or view.error:
            raise HTTPProblem(404, view.error or "No interception CA is configured.")
        attr, content_type = DOWNLOADS[name]
        return Response(
            200,
            getattr(view, attr),
            content_type,
            headers=[("Content-Disposition", f'attachment; filename="{name}"')],
        )

    def _plain_page(self, title: str, message: str) -> bytes:
        return self.env.get_template("message.html").render(title=title, message=message).encode()

    def _problem(self, status: int, message: str) -> Response:
        title = http.HTTPStatus(status).phrase
        return Response(status, self._plain_page(title, message))

    def _static(self, name: str) -> Response:
        match = _STATIC_NAME.fullmatch(name)
        if match is None:
            raise HTTPProblem(404, "Not found.")
        try:
            body = (self.static / name).read_bytes()
        except FileNotFoundError as exc:
            raise HTTPProblem(404, "Not found.") from exc
        return Response(
            200,
            body,
            _STATIC_TYPES[match.group(1)],
            headers=[("Cache-Control", "no-cache")],
        )


_CA_DIRECTIVES = frozenset({"SSLCACertFile", "SSLCAKeyFile"})
_RULE_ACTIONS = ("rule-add", "rule-remove", "rule-up", "rule-down")
_RULE_FIELDS = ("kind", "pattern", "target")


def format_figure(value: Any, kind: str) -> str:
    """Show a status figure as static/status.js does (int, rate, ratio, bytes, text)."""
    if value is None:
        return "\u2013"
    if kind == "text":
        return str(value)
    if kind == "ratio":
        return f"{value * 100:.1f} %"
    if kind == "rate":
        return f"{value:.2f}" if value < 10 else f"{value:.0f}"
    if kind == "bytes":
        amount = float(value)
        for unit in ("B", "KiB", "MiB", "GiB"):
            if amount < 1024:
                return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
            amount /= 1024
        return f"{amount:.1f} TiB"
    return f"{value:,}"


def _int_field(form: dict[str, str], key: str, default: int) -> int:
    text = form.get(key, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise HTTPProblem(400, f"{key} must be a number.") from exc


def _addresses(value: Any) -> list[str]:
    """Format the proxy's listening address(es) for the page header."""
    if not value:
        return []
    items = [value] if isinstance(value, tuple) and len(value) == 2 else list(value)
    out = []
    for item in items:
        if isinstance(item, tuple) and len(item) >= 2:
            host, port = item[0], item[1]
            out.append(f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}")
        else:
            out.append(str(item))
    return out


__all__ = ["AdminApp", "RuntimeLike", "password_file_path"]
