"""Loading, checking, changing and saving the directive file.

The file is read with configobj (``Name = value`` lines, ``#`` comments, triple-quoted
multi-line values). Every value is then parsed by its directive's type, so a ``Config`` is an
immutable snapshot of typed values (``cfg.persist_timeout_s == 4.0``) plus their canonical
text (``cfg.text("PersistTimeout") == "4 seconds"``).

configobj options, and why:

* ``list_values=False``: with list values on, configobj splits ``127.0.0.0/8, ::1`` at the
  comma into a Python list and re-quotes items on write, so an address list or a URL with a
  comma would not round-trip. Off, every value is one string and our types do the splitting.
  The price: configobj then leaves quotes on single-line values (``"a # b"`` stays quoted), so
  ``_unquote`` strips one matching pair of quotes, and ``encode_value`` adds them when a value
  would otherwise be misread (it contains ``#`` or starts with a quote). Multi-line values
  (mapping rules) use triple quotes, which configobj handles itself in both directions.
* ``interpolation=False``: ``%(name)s`` and ``$name`` would be expanded inside URLs.
* ``raise_errors=True``: stop at the first syntax error, which carries its line number.
* The text is read and decoded by us (UTF-8) and handed to configobj as lines, so a missing
  or unreadable file and bad encodings become ``ConfigError`` too, and writing is ours to do
  atomically.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import configobj

from cproxy.errors import ConfigError

from .attributes import ConfigAttributes
from .freshnesstypes import per_pattern_hint
from .registry import DIRECTIVES, Directive, lookup

__all__ = [
    "Config",
    "config_with",
    "defaults",
    "diff",
    "load_config",
    "save_changes",
]

_ATTRS: dict[str, str] = {d.attr: name for name, d in DIRECTIVES.items()}


class Config(ConfigAttributes):
    """An immutable, typed snapshot of every directive's value.

    Values are read as attributes named by ``Directive.attr`` (``cfg.max_active_threads``,
    ``cfg.read_timeout_s``, ``cfg.cache_memory_bytes``). Two configs are equal when all their
    values are equal, wherever they came from.
    """

    # The attributes live in the instance __dict__, so reading one (done many times per
    # request) is a plain attribute lookup; __getattr__ only runs for unknown names.
    __slots__ = ("__dict__", "_texts", "_values", "source_path")

    _values: dict[str, Any]
    _texts: dict[str, str]
    #: absolute path of the directive file this came from, or None for built-in defaults
    source_path: str | None

    def __init__(self, values: Mapping[str, Any], source_path: str | None = None) -> None:
        """Build from typed values by canonical name; every directive must be present.

        Use ``defaults()``, ``load_config()`` or ``config_with()`` rather than this.
        """
        missing = DIRECTIVES.keys() - values.keys()
        unknown = values.keys() - DIRECTIVES.keys()
        if missing or unknown:
            raise ValueError(f"Config needs exactly the directives; missing {missing}, {unknown=}")
        ordered = {name: values[name] for name in DIRECTIVES}
        object.__setattr__(self, "_values", ordered)
        object.__setattr__(
            self, "_texts", {name: DIRECTIVES[name].type.format(v) for name, v in ordered.items()}
        )
        object.__setattr__(self, "source_path", source_path)
        self.__dict__.update({DIRECTIVES[name].attr: v for name, v in ordered.items()})

    if not TYPE_CHECKING:
        # Hidden from mypy: with a __getattr__ every attribute would type as Any, and a
        # misspelt cfg.<attr> would pass; the generated ConfigAttributes declares them all.

        def __getattr__(self, attr: str) -> Any:
            # Only called for names not found normally, i.e. not a directive's attribute.
            import difflib  # for the mistakes only (issue #21: what a proxy imports)

            close = difflib.get_close_matches(attr, _ATTRS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise AttributeError(f"Config has no attribute {attr!r}{hint}")

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError("Config is immutable; use config_with() to derive a new one")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self._texts.values()))

    def __repr__(self) -> str:
        default = defaults()._texts
        changed = [f"{n}={t!r}" for n, t in self._texts.items() if t != default[n]]
        return f"Config(source_path={self.source_path!r}, {', '.join(changed) or 'defaults'})"

    def _directive(self, name: str) -> Directive:
        d = lookup(name)
        if d is None:
            raise KeyError(f"unknown directive {name!r}")
        return d

    def value(self, name: str) -> Any:
        """The typed value of directive ``name`` (any letter case)."""
        return self._values[self._directive(name).name]

    def text(self, name: str) -> str:
        """The canonical text of directive ``name`` (any letter case), e.g. ``"4 seconds"``."""
        return self._texts[self._directive(name).name]

    def texts(self) -> dict[str, str]:
        """Canonical text of every directive, by canonical name, in canonical order."""
        return dict(self._texts)

    def resolve_path(self, name: str) -> str:
        """Directive ``name``'s file name made absolute.

        A relative name is taken relative to the directive file's directory, or to the
        working directory for built-in defaults. ``-`` (standard output/error) and the empty
        string (off) are returned unchanged.
        """
        value = self.value(name)
        if not isinstance(value, str):
            raise TypeError(f"{name} is not a file name")
        if value in ("", "-"):
            return value
        value = os.path.expanduser(value)
        base = os.path.dirname(self.source_path) if self.source_path else os.getcwd()
        return os.path.normpath(os.path.join(base, value))


@functools.cache
def defaults() -> Config:
    """The built-in configuration: every directive at its declared default."""
    return Config({name: d.type.parse(d.default) for name, d in DIRECTIVES.items()})


# ---------------------------------------------------------------------------------------------
# Errors


def _error(
    what: str,
    allowed: str | None,
    *,
    path: str | None,
    line: int | None,
    directive: str | None,
) -> ConfigError:
    message = f"{what}; allowed: {allowed}" if allowed else what
    # str(ConfigError) must be one line, whatever text the user's value contained.
    message = " ".join(message.split())
    return ConfigError(message, path=path, line=line, directive=directive)


def _parse_value(d: Directive, text: str, *, path: str | None, line: int | None) -> Any:
    try:
        return d.type.parse(text)
    except ValueError as exc:
        what = str(exc) + per_pattern_hint(d.name, text)
        raise _error(what, d.type.allowed, path=path, line=line, directive=d.name) from exc


def _unknown(name: str, *, path: str | None, line: int | None) -> ConfigError:
    import difflib  # for the mistakes only (issue #21: what a proxy imports)

    close = difflib.get_close_matches(name, list(DIRECTIVES), n=1, cutoff=0.6)
    if not close:  # case differences count as nothing: compare in lower case too
        lowered = {n.lower(): n for n in DIRECTIVES}
        close = [lowered[m] for m in difflib.get_close_matches(name.lower(), lowered, n=1)]
    hint = per_pattern_hint(name) or (f" (did you mean {close[0]}?)" if close else "")
    return _error(
        f"unknown directive{hint}",
        "the directives listed in cproxy.conf(5)",
        path=path,
        line=line,
        directive=name,
    )


# ---------------------------------------------------------------------------------------------
# Reading

# configobj keeps no line numbers for keys, so the raw text is scanned for them the way
# configobj reads it: ``key = value`` lines (key optionally quoted), ``[section]`` lines, and
# triple-quoted values that continue over several lines (whose lines are not keys).
_KEY_LINE = re.compile(r"""^\s*("[^"]*"|'[^']*'|[^'"=\[\s#][^=]*?)\s*=\s*(.*)$""")
_SECTION_LINE = re.compile(r"^\s*(\[+)\s*(.*?)\s*(\]+)")


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _scan_lines(lines: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """First line number (1-based) of each top-level key, and of each section name."""
    keys: dict[str, int] = {}
    sections: dict[str, int] = {}
    closing: str | None = None  # the triple quote that ends the current multi-line value
    for number, line in enumerate(lines, start=1):
        if closing is not None:
            if closing in line:
                closing = None
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        section = _SECTION_LINE.match(line)
        if section:
            sections.setdefault(_strip_quotes(section.group(2)), number)
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            continue
        keys.setdefault(_strip_quotes(m.group(1)), number)
        value = m.group(2)
        quote = value[:3]
        if quote in ('"""', "'''") and quote not in value[3:]:
            closing = quote
    return keys, sections


def _unquote(raw: str) -> str:
    """Strip one pair of matching quotes from a single-line value (see the module docstring).

    Multi-line values come back from configobj without their triple quotes, and contain a
    new line, so they are left alone.
    """
    if "\n" in raw:
        return raw
    return _strip_quotes(raw)


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise _error("file not found", None, path=path, line=None, directive=None) from exc
    except OSError as exc:
        what = f"cannot read the file: {exc.strerror or exc}"
        raise _error(what, None, path=path, line=None, directive=None) from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _error(
            f"byte {data[exc.start]:#04x} is not UTF-8",
            "UTF-8 text",
            path=path,
            line=line,
            directive=None,
        ) from exc
    return text


def _configobj(lines: list[str], path: str) -> configobj.ConfigObj:
    """Parse lines with configobj, turning its errors into one-line ConfigErrors."""
    try:
        return configobj.ConfigObj(
            lines,
            list_values=False,
            interpolation=False,
            raise_errors=True,
            # Top-level keys are never indented; this only puts two spaces before an
            # inline comment when writing ("Port = 8080  # why"), where configobj would
            # otherwise glue it to the value.
            indent_type="  ",
        )
    except configobj.ConfigObjError as exc:
        raise _syntax_error(exc, lines, path) from exc


def _syntax_error(exc: configobj.ConfigObjError, lines: list[str], path: str) -> ConfigError:
    line = exc.line_number
    text = lines[line - 1] if line and 0 < line <= len(lines) else ""
    key = _KEY_LINE.match(text)
    name = None
    if key is not None:
        raw_name = _strip_quotes(key.group(1))
        d = lookup(raw_name)
        name = d.name if d else raw_name
    where: dict[str, Any] = {"path": path, "line": line, "directive": name}
    if _SECTION_LINE.match(text):
        return _section_error(path, line)
    if isinstance(exc, configobj.DuplicateError):
        keys, _ = _scan_lines(lines)
        first = keys.get(_strip_quotes(key.group(1))) if key else None
        return _error(
            f"given twice (first on line {first}){per_pattern_hint(name or '')}",
            "each directive once in the file",
            **where,
        )
    if "multiline" in str(exc):
        value = key.group(2) if key else ""
        return _error(
            f"the triple-quoted value is not closed (no matching {value[:3]})",
            'a multi-line value between """ and """',
            **where,
        )
    if "Parse error in value" in str(exc):
        return _error(
            "unbalanced quote in the value",
            "a value, optionally in matching single or double quotes",
            **where,
        )
    if key is None:
        return _error(
            f"line {text.strip()!r} is not Name = value",
            "Name = value lines, # comments and blank lines",
            path=path,
            line=line,
            directive=None,
        )
    return _error(str(exc), "Name = value lines", **where)


def _section_error(path: str, line: int | None) -> ConfigError:
    return _error(
        "sections ([name] lines) are not used in cproxy.conf",
        "Name = value lines, # comments and blank lines",
        path=path,
        line=line,
        directive=None,
    )


def _check(co: configobj.ConfigObj, lines: list[str], path: str) -> dict[str, tuple[str, Any]]:
    """Validate a parsed file: canonical name -> (key as spelled in the file, typed value)."""
    keys, sections = _scan_lines(lines)
    if co.sections:
        raise _section_error(path, min(sections.get(s, 0) for s in co.sections) or None)
    found: dict[str, tuple[str, Any]] = {}
    for key in co.scalars:
        line = keys.get(key)
        d = lookup(key)
        if d is None:
            raise _unknown(key, path=path, line=line)
        if d.name in found:
            first_key = found[d.name][0]
            raise _error(
                f"given twice (first on line {keys.get(first_key)} as {first_key})",
                "each directive once in the file, in any letter case",
                path=path,
                line=line,
                directive=d.name,
            )
        found[d.name] = (key, _parse_value(d, _unquote(co[key]), path=path, line=line))
    return found


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the directive file at ``path``; directives it omits keep defaults.

    Raises ConfigError, whose str() is one line ``path:line: Directive: what; allowed: ...``,
    for the first problem found: a missing or unreadable file, a syntax error, a section, an
    unknown or repeated directive, or a bad value.
    """
    shown = os.fspath(path)
    lines = _read_text(shown).splitlines()
    found = _check(_configobj(lines, shown), lines, shown)
    values = dict(defaults()._values)
    values.update({name: value for name, (_, value) in found.items()})
    return Config(values, source_path=os.path.abspath(shown))


# ---------------------------------------------------------------------------------------------
# Changing and saving


def _validate_changes(changes: Mapping[str, str]) -> dict[str, Any]:
    """Parse every change: canonical name -> typed value; the first bad one raises."""
    parsed: dict[str, Any] = {}
    for name, text in changes.items():
        d = lookup(name)
        if d is None:
            raise _unknown(name, path=None, line=None)
        parsed[d.name] = _parse_value(d, text, path=None, line=None)
    return parsed


def config_with(base: Config, changes: Mapping[str, str]) -> Config:
    """A new Config: ``base`` with the directives in ``changes`` (name -> text) replaced.

    Every change is checked before anything is applied: the first bad one raises
    ConfigError with ``.directive`` set, and no half-changed Config is ever returned.
    """
    values = dict(base._values)
    values.update(_validate_changes(changes))
    return Config(values, source_path=base.source_path)


def diff(old: Config, new: Config) -> list[str]:
    """Names of the directives whose values differ, in canonical order."""
    return [name for name in DIRECTIVES if old.value(name) != new.value(name)]


def encode_value(d: Directive, text: str) -> str:
    """The string to hand configobj so that the file reads back as ``text``.

    Shared with the sample-file generator, so the sample is quoted exactly as a save would.
    """
    if "\n" in text:
        # configobj writes values with new lines in triple quotes; indenting the lines and
        # starting on a new one keeps a block of rules readable.
        return "\n" + "\n".join("    " + line for line in text.splitlines()) + "\n"
    if not text:
        return text  # configobj writes "" for an empty value
    if "#" in text or text[0] in "\"'" or text != text.strip():
        for quote in ('"', "'"):
            if quote not in text:
                return quote + text + quote
        raise _error(
            "a value with #, single and double quotes cannot be written",
            d.type.allowed,
            path=None,
            line=None,
            directive=d.name,
        )
    return text


def _write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so a reader sees the old file or the new, never half."""
    # Imported by the admin's Apply alone: tempfile (with shutil, bz2, lzma and random) is
    # half a MiB a proxy that never saves its file does not need (issue #21).
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    mode = os.stat(path).st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=".cproxy-", suffix=".conf.tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_changes(path: str | os.PathLike[str], changes: Mapping[str, str]) -> None:
    """Write ``changes`` (name -> text) into the directive file at ``path``.

    The file is re-read and rewritten through configobj, so comments, blank lines and the
    order of directives survive. A directive already in the file (in any letter case) keeps
    its place and is rewritten only when its value changes; one not in the file is appended.
    Values are written in canonical form. The result is checked by the loader before it
    atomically replaces the file; on any ConfigError the file is left untouched.
    """
    shown = os.fspath(path)
    parsed = _validate_changes(changes)
    original = _read_text(shown)
    lines = original.splitlines()
    co = _configobj(lines, shown)
    found = _check(co, lines, shown)
    for name, value in parsed.items():
        d = DIRECTIVES[name]
        key, old_value = found.get(name, (name, None))
        if name in found and old_value == value:
            continue  # same value: keep the user's own spelling of it
        try:
            co[key] = encode_value(d, d.type.format(value))
        except configobj.ConfigObjError as exc:
            raise _error(str(exc), d.type.allowed, path=shown, line=None, directive=name) from exc
    try:
        out = co.write()
    except configobj.ConfigObjError as exc:  # a value configobj cannot quote
        raise _error(str(exc), None, path=shown, line=None, directive=None) from exc
    # configobj returns a multi-line value as one item: split it for the check below.
    new_lines = "\n".join(out).splitlines()
    # Prove the new text loads before it replaces a working file.
    _check(_configobj(new_lines, shown), new_lines, shown)
    newline = "\r\n" if "\r\n" in original else "\n"
    _write_atomically(shown, newline.join(new_lines) + newline)
