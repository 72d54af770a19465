"""HTTP/1.1 message heads: strict parsing (RFC 9112 §2-§6) and canonical serialisation.

A request head is parsed once into a `Request`; what cproxy forwards is built from
that parsed form, never from the raw bytes (DESIGN.md §5 rule 1), so an origin can
never read a message differently from the way cproxy read it.

Body framing is reduced to one of four kinds:

- ``"none"``: no body,
- ``"length"``: exactly ``content_length`` bytes,
- ``"chunked"``: chunked transfer coding (decoded by `ChunkedDecoder`),
- ``"close"``: the body runs until the origin closes (responses only).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Sequence
from typing import NoReturn, overload

from cproxy.errors import ClientProtocolError, OriginProtocolError
from cproxy.http.limits import (
    MAX_CONTENT_LENGTH_DIGITS,
    MAX_HEAD_BYTES,
    MAX_HEADER_COUNT,
    MAX_REQUEST_LINE_BYTES,
)
from cproxy.http.syntax import HOP_BY_HOP, split_list
from cproxy.memo import memoised_when_short

_FRAMING = frozenset({"content-length", "transfer-encoding"})
# The fields a proxy never forwards as they are: hop-by-hop and framing (rebuilt by the
# sender). Those a Connection field names are added per message (`Headers.dropped_names`).
NOT_FORWARDED = HOP_BY_HOP | _FRAMING
# Relayed to the client with the response, Via is rewritten with our entry appended.
_NOT_RELAYED = NOT_FORWARDED | {"via"}
# The fields _parse_request_framing looks at.
_REQUEST_FRAMING_FIELDS = frozenset({"transfer-encoding", "content-length", "connection", "expect"})

_TOKEN_CHARS = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TOKEN = re.compile(rb"[" + _TOKEN_CHARS + rb"]+")
# Field values: any octet but controls; HTAB is allowed (RFC 9110 §5.5).
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_REQUEST_LINE = re.compile(rb"([" + _TOKEN_CHARS + rb"]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
_STATUS_LINE = re.compile(rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
_DIGITS = re.compile(r"[0-9]+")
_EMPTY_LINES = re.compile(rb"(?:\r\n)+")
# A block of well-formed field lines (RFC 9112 §5.1, RFC 9110 §5.5), as latin-1 text.
# Possessive quantifiers: no part of a line can match another way (a name has no colon, a
# value no CR or LF), so nothing is kept for backtracking (timeit: 1.25 -> 1.02 us for a
# 9-field response block).
_FIELD_BLOCK = re.compile("(?:[" + _TOKEN_CHARS.decode() + "]++:[^\x00-\x08\x0a-\x1f\x7f]*+\r\n)*+")
# OWS (RFC 9110 §5.6.3) is SP and HTAB only: str.strip() would also remove NBSP,
# NEL and other Unicode spaces of a latin-1 value, which other servers keep.
_OWS = " \t"
# reg-name (RFC 3986 §3.2.2) restricted to what DNS names and IPv4 literals use;
# percent-encoded and sub-delim host names have no legitimate use in a proxy. Labels
# are 1-63 characters: an empty one ("a..b") would make the resolver raise.
_LABEL_TEXT = r"[A-Za-z0-9_](?:[A-Za-z0-9\-_]{0,61}[A-Za-z0-9_])?"
REG_NAME_TEXT = rf"(?:{_LABEL_TEXT}\.)*{_LABEL_TEXT}\.?"
_REG_NAME = re.compile(REG_NAME_TEXT)
# The common absolute-form target and Host value, matched in one step; anything else
# (IPv6 literals, userinfo, odd ports) goes the long way for its exact error.
_ABSOLUTE_HTTP = re.compile(
    r"[hH][tT][tT][pP]://(" + REG_NAME_TEXT + r")(?::([0-9]{1,5}))?([/?][\x21-\x7e]*)?"
)
_SIMPLE_AUTHORITY = re.compile(r"(" + REG_NAME_TEXT + r")(?::([0-9]{1,5}))?")

DEFAULT_PORTS = {"http": 80, "https": 443}


def index_fields(fields: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The name index of ``fields``: lower-cased name -> its values, in order."""
    index: dict[str, list[str]] = {}
    for name, value in fields:
        key = name.lower()
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return index


def _options(value: str) -> frozenset[str]:
    return frozenset(member.lower() for member in split_list(value))


# The options (lower-cased) one Connection field line lists (RFC 9110 §7.6.1), asked of
# every request and response that has one: the same few values ("keep-alive", "close")
# come again and again, so short ones are remembered.
connection_options = memoised_when_short(_options, max_len=256, maxsize=256)


class Headers(Sequence[tuple[str, str]]):
    """An ordered sequence of ``(name, value)`` fields with case-insensitive lookup.

    Names keep the case they were received in (some origins care). Lookups go
    through an index from lower-cased name to values, built on first use and
    dropped on change, so a request whose fields are looked up a dozen times
    (framing, routing, the cache) lower-cases each name once.
    """

    __slots__ = ("_fields", "_index")

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str]] = fields if fields is not None else []
        self._index: dict[str, list[str]] | None = None

    @classmethod
    def with_index(cls, fields: list[tuple[str, str]], index: dict[str, list[str]]) -> Headers:
        """Headers whose name index is already known (a parser built it in the same pass,
        or it is shared by requests with the same fields). Headers never change an index
        in place (a change drops it), so sharing one is safe."""
        headers = cls(fields)
        headers._index = index
        return headers

    def by_name(self) -> dict[str, list[str]]:
        """The index: lower-cased field name -> its values, in order. Read-only."""
        index = self._index
        if index is None:
            index = self._index = index_fields(self._fields)
        return index

    # get, get_values and get_all read ``_index`` themselves rather than through by_name():
    # a pooled miss makes a dozen such lookups, and a Python call costs as much as the
    # dict lookup it wraps.

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        index = self._index
        if index is None:
            index = self.by_name()
        values = index.get(name.lower())
        return values[0] if values else default

    def get_values(self, name: str) -> Sequence[str]:
        """Every value of ``name``, in order, without a copy: the index's own list (or an
        empty tuple), which the caller must not change. `get_all` gives a list to keep."""
        index = self._index
        if index is None:
            index = self.by_name()
        return index.get(name.lower(), ())

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order (a new list)."""
        index = self._index
        if index is None:
            index = self.by_name()
        return list(index.get(name.lower(), ()))

    def get_tokens(self, name: str) -> list[str]:
        """The list members of every ``name`` field (RFC 9110 §5.6.1: a comma inside a
        quoted string does not split), lower-cased."""
        index = self._index
        if index is None:
            index = self.by_name()
        values = index.get(name.lower())
        if not values:
            return []
        return [member.lower() for value in values for member in split_list(value)]

    def has_any(self, names: frozenset[str]) -> bool:
        """Is a field with one of ``names`` (lower-case) present?"""
        index = self._index
        if index is None:
            index = self.by_name()
        return not index.keys().isdisjoint(names)

    def __contains__(self, name: object) -> bool:
        """``"name" in headers``: is a field of that name present?"""
        if not isinstance(name, str):
            return False
        index = self._index
        if index is None:
            index = self.by_name()
        return name.lower() in index

    def add(self, name: str, value: str) -> None:
        self._fields.append((name, value))
        self._index = None

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one with ``value``."""
        self.remove(name)
        self._fields.append((name, value))

    def remove(self, name: str) -> None:
        name = name.lower()
        self._fields = [(n, v) for n, v in self._fields if n.lower() != name]
        self._index = None

    def items(self) -> list[tuple[str, str]]:
        return self._fields

    def copy(self) -> Headers:
        return Headers(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    @overload
    def __getitem__(self, i: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, str]]: ...
    def __getitem__(self, i: int | slice) -> tuple[str, str] | list[tuple[str, str]]:
        return self._fields[i]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __repr__(self) -> str:
        return f"Headers({self._fields!r})"

    def dropped_names(self, base: frozenset[str] = NOT_FORWARDED) -> frozenset[str]:
        """``base`` (lower-case names) and the names this message's Connection field
        lists, which are for this hop only (RFC 9110 §7.6.1)."""
        index = self._index
        if index is None:
            index = self.by_name()
        connection = index.get("connection")
        if not connection:
            return base
        if len(connection) == 1:
            options = connection_options(connection[0])
        else:
            options = frozenset().union(*map(connection_options, connection))
        # Usually "keep-alive", already in ``base``: no new set is made.
        return base if options <= base else base | options

    def end_to_end(self, dropped: frozenset[str] = NOT_FORWARDED) -> list[tuple[str, str]]:
        """The fields a proxy forwards (a new list): without hop-by-hop fields, the fields
        the Connection header names, and the framing fields (rebuilt by the sender).
        ``dropped``: the names left out, `NOT_FORWARDED` and any the caller writes itself."""
        index = self._index
        if index is None:
            index = self.by_name()
        if index.keys().isdisjoint(dropped):
            # Nothing to drop (so no Connection field either): no name is lower-cased.
            return list(self._fields)
        drop = self.dropped_names(dropped)
        return [field for field in self._fields if field[0].lower() not in drop]


class Request:
    """A parsed request head.

    ``form`` is the request-target form (RFC 9112 §3.2): ``"origin"``,
    ``"absolute"``, ``"authority"`` (CONNECT) or ``"asterisk"`` (OPTIONS *).
    ``host``/``port`` come from the absolute-form target, the CONNECT authority,
    or the Host field; ``path`` is the origin-form target to forward.
    """

    __slots__ = (
        "body",
        "content_length",
        "expect_continue",
        "form",
        "headers",
        "host",
        "keep_alive",
        "method",
        "path",
        "port",
        "scheme",
        "target",
        "version",
    )

    def __init__(self, method: str, target: str, version: int, headers: Headers) -> None:
        self.method = method
        self.target = target
        self.version = version  # the minor version: 0 or 1
        self.headers = headers
        self.form = "origin"
        self.scheme = "http"
        self.host = ""
        self.port = 80
        self.path = "/"
        self.body = "none"
        self.content_length = 0
        self.keep_alive = version >= 1
        self.expect_continue = False

    @property
    def url(self) -> str:
        """The absolute URI, with the scheme and host lower-cased and the default port omitted."""
        return f"{self.scheme}://{self.host_header}{self.path}"

    @property
    def host_header(self) -> str:
        """The Host value to send to the origin (RFC 9110 §7.2)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port != DEFAULT_PORTS.get(self.scheme):
            return f"{host}:{self.port}"
        return host

    def __copy__(self) -> Request:
        """A shallow copy (`copy.copy`), written out: the default copy rebuilds an object
        through ``__reduce_ex__``, which a compiled class (setup.py's mypyc build) refuses
        for a class whose ``__init__`` takes arguments."""
        clone = Request(self.method, self.target, self.version, self.headers)
        clone.form, clone.scheme, clone.host, clone.port, clone.path = (
            self.form,
            self.scheme,
            self.host,
            self.port,
            self.path,
        )
        clone.body, clone.content_length = self.body, self.content_length
        clone.keep_alive, clone.expect_continue = self.keep_alive, self.expect_continue
        return clone

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target} HTTP/1.{self.version}>"


class Response:
    """A parsed response head from an origin. ``version`` is the minor version of
    HTTP/1 (0 or 1), or 2 for a response that came over HTTP/2."""

    __slots__ = ("body", "content_length", "headers", "keep_alive", "reason", "status", "version")

    def __init__(self, version: int, status: int, reason: str, headers: Headers) -> None:
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = "close"
        self.content_length = 0
        self.keep_alive = False

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def skip_empty_lines(buf: bytes | bytearray) -> int:
    """How many bytes of empty lines (CRLF pairs) start ``buf``, found in one pass.

    RFC 9112 §2.2 lets a server ignore them before a request line. Stripping them a pair
    at a time was quadratic; they count toward `MAX_HEAD_BYTES` (``skipped`` of
    `find_head_end`), so a client streaming CRLFs is refused like any over-long head.
    """
    match = _EMPTY_LINES.match(buf)
    return match.end() if match else 0


def find_head_end(buf: bytes | bytearray, *, client: bool = True, skipped: int = 0) -> int:
    """Index just past the blank line ending a message head in ``buf``, or -1.

    Raises when the head is over `MAX_HEAD_BYTES` or uses bare LFs, which RFC 9112
    §2.2 allows a recipient to accept but which some servers read differently:
    strictness here is what keeps the two ends in agreement. A complete request head
    (``client``) is returned without the bare-LF scan: `parse_request_head` makes it.
    ``skipped``: the empty lines before it (`skip_empty_lines`), counted toward the limit.
    """
    end = buf.find(b"\r\n\r\n")
    # Any bare LF in the head, not only in its blank line, is refused at once: the
    # bytes after the head (a body) are not looked at. A complete request head is
    # checked by parse_request_head instead (or by the fast lane), so this scan is not
    # made twice for the usual request that arrives whole.
    limit = len(buf) if end == -1 else end + 4
    if (end == -1 or not client) and _has_bare_lf(buf, limit):
        _fail(client, 400, "message head uses bare LF line endings")
    if client:
        # Refuse an over-long request line as soon as it is seen, not at 64 KiB.
        # A final CR may be the first half of the CRLF ending a line of the limit.
        line_end = buf.find(b"\r\n")
        line_bytes = line_end if line_end != -1 else len(buf) - buf.endswith(b"\r")
        if line_bytes > MAX_REQUEST_LINE_BYTES:
            _fail(client, 414, "request line too long")
    if end == -1:
        if skipped + len(buf) > MAX_HEAD_BYTES:
            _fail(client, 431, f"message head larger than {MAX_HEAD_BYTES} bytes")
        return -1
    if skipped + end + 4 > MAX_HEAD_BYTES:
        _fail(client, 431, f"message head larger than {MAX_HEAD_BYTES} bytes")
    return end + 4


def _has_bare_lf(buf: bytes | bytearray, limit: int) -> bool:
    # Every CRLF holds one LF, so a count mismatch means a bare LF (two C-speed scans).
    return buf.count(b"\n", 0, limit) != buf.count(b"\r\n", 0, limit)


def _fail(client: bool, status: int, message: str) -> NoReturn:
    if client:
        raise ClientProtocolError(status, message)
    raise OriginProtocolError(message)


def parse_field_block(block: bytes, client: bool) -> Headers:
    """The field lines of a head, each ending in CRLF (``block`` may be empty).

    The common case, a block of well-formed lines, is checked by one regular
    expression over the whole block and split by another, both in C; anything
    else goes through `_parse_fields`, line by line, for the exact error (or, for
    an origin, to unfold obs-fold lines).
    """
    text = block.decode("latin-1")
    if _FIELD_BLOCK.fullmatch(text):
        fields: list[tuple[str, str]] = []
        index: dict[str, list[str]] = {}
        if text:
            for line in text[:-2].split("\r\n"):
                # Validated above: the name is a token (no colon), the value has no CTL.
                name, _, value = line.partition(":")
                value = value.strip(_OWS)
                fields.append((name, value))
                key = name.lower()
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
        if len(fields) <= MAX_HEADER_COUNT:
            return Headers.with_index(fields, index)  # built in the same pass
    return _parse_fields(block[:-2].split(b"\r\n") if block else [], client)


def _parse_fields(lines: list[bytes], client: bool) -> Headers:
    """Field lines (RFC 9112 §5). Clients get no leniency; an origin's obs-fold is
    replaced by a space, as §5.2 allows a proxy to do."""
    if len(lines) > MAX_HEADER_COUNT:
        _fail(client, 431, f"more than {MAX_HEADER_COUNT} header fields")
    fields: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if client or not fields:
                _fail(client, 400, "obsolete line folding in header field")
            if _BAD_VALUE.search(line):
                _fail(client, 400, "control character in header field value")
            name, value = fields[-1]
            folded = line.strip(b" \t").decode("latin-1")
            fields[-1] = (name, " ".join(part for part in (value, folded) if part))
            continue
        colon = line.find(b":")
        if colon <= 0 or not _TOKEN.fullmatch(line, 0, colon):
            _fail(client, 400, "malformed header field name")
        raw = line[colon + 1 :].strip(b" \t")
        if _BAD_VALUE.search(raw):
            _fail(client, 400, "control character in header field value")
        fields.append((line[:colon].decode("ascii"), raw.decode("latin-1")))
    return Headers(fields)


def _parse_authority(authority: str, client: bool = True) -> tuple[str, int | None]:
    """``host[:port]`` -> (lower-cased host without brackets, port or None)."""
    if "@" in authority:
        _fail(client, 400, "userinfo is not allowed in the request target")
    port: int | None = None
    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            _fail(client, 400, "unterminated IPv6 literal in authority")
        host, rest = authority[1:close], authority[close + 1 :]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            _fail(client, 400, "invalid IPv6 literal in authority")
        if "%" in host:
            # A zone ID (RFC 6874) names an interface of the client's host, not ours.
            _fail(client, 400, "IPv6 zone identifier in authority")
        if rest:
            if not rest.startswith(":"):
                _fail(client, 400, "invalid authority")
            port_text = rest[1:]
        else:
            port_text = ""
    else:
        host, _, port_text = authority.partition(":")
        if not _REG_NAME.fullmatch(host):
            _fail(client, 400, "invalid host name")
    if port_text:
        if not _DIGITS.fullmatch(port_text) or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            _fail(client, 400, "invalid port")
        port = int(port_text)
    return host.lower().rstrip("."), port


def parse_authority(authority: str) -> tuple[str, int | None]:
    """A client's ``host[:port]`` (a Host field, a CONNECT target) -> (lower-cased host
    without brackets, port or None); raises `ClientProtocolError` 400 when malformed."""
    return _parse_authority(authority)


def _parse_content_length(values: Sequence[str], client: bool) -> int:
    """Content-Length (RFC 9112 §6.3): every value, in every field line, must be the
    same run of digits; anything else is a framing error."""
    if len(values) == 1:
        # The usual one plain number (already stripped of OWS by the field parser):
        # isascii() keeps out the other scripts' digits that isdigit() accepts.
        value = values[0]
        if value.isdigit() and value.isascii() and len(value) <= MAX_CONTENT_LENGTH_DIGITS:
            return int(value)
    lengths = set()
    for value in values:
        for item in value.split(","):
            item = item.strip(_OWS)
            if not _DIGITS.fullmatch(item) or len(item) > MAX_CONTENT_LENGTH_DIGITS:
                _fail(client, 400, f"invalid Content-Length {item!r}")
            lengths.add(int(item))
    if len(lengths) != 1:
        _fail(client, 400, "conflicting Content-Length values")
    return lengths.pop()


def says_close(connection: Sequence[str] | None) -> bool:
    """Does a message whose Connection field lines are ``connection`` (None: no field)
    list the ``close`` option (RFC 9112 §9.6)?"""
    if not connection:
        return False
    if len(connection) == 1:
        return "close" in connection_options(connection[0])  # the usual one line
    return any("close" in connection_options(value) for value in connection)


def _transfer_codings(values: Sequence[str]) -> list[str]:
    return [c.strip(_OWS).lower() for v in values for c in v.split(",")]


def parse_request_head(head: bytes) -> Request:
    """Parse a request head (up to and including its blank line).

    Raises `ClientProtocolError` with the status RFC 9112 asks for.
    """
    # The bounds hold even for a caller that did not use find_head_end.
    if len(head) > MAX_HEAD_BYTES:
        raise ClientProtocolError(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
    if not head.endswith(b"\r\n\r\n"):
        raise ClientProtocolError(400, "incomplete request head")
    if _has_bare_lf(head, len(head)):
        raise ClientProtocolError(400, "message head uses bare LF line endings")
    first_crlf = head.find(b"\r\n")
    line = head[:first_crlf]
    if len(line) > MAX_REQUEST_LINE_BYTES:
        raise ClientProtocolError(414, "request line too long")
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise ClientProtocolError(400, "malformed request line")
    method_b, target_b, major, minor = m.groups()
    if major != b"1":
        raise ClientProtocolError(505, f"HTTP/{major.decode()}.{minor.decode()} is not supported")
    method = method_b.decode("ascii")
    target = target_b.decode("ascii")
    # A higher 1.x minor version is answered as 1.1 (RFC 9110 §2.5).
    fields = parse_field_block(head[first_crlf + 2 : -2], True)
    req = Request(method, target, 0 if minor == b"0" else 1, fields)
    _parse_target(req)
    _parse_request_framing(req)
    return req


def _parse_target(req: Request) -> None:
    target = req.target
    headers = req.headers
    if "#" in target:
        raise ClientProtocolError(400, "fragment in request target")
    hosts = headers.get_values("host")
    if len(hosts) > 1:
        raise ClientProtocolError(400, "more than one Host header field")
    if req.version >= 1 and not hosts:
        raise ClientProtocolError(400, "missing Host header field")
    if req.method == "CONNECT":
        if target.startswith("/") or "/" in target:
            raise ClientProtocolError(400, "CONNECT needs an authority-form target (host:port)")
        host, port = _parse_authority(target)
        if port is None:
            raise ClientProtocolError(400, "CONNECT target needs a port")
        req.form, req.host, req.port, req.path = "authority", host, port, ""
        return
    if target == "*":
        if req.method != "OPTIONS":
            raise ClientProtocolError(400, "asterisk-form target outside OPTIONS")
        req.form, req.path = "asterisk", "*"
        _host_from_field(req, hosts)
        return
    if target.startswith("/"):
        req.form, req.path = "origin", target
        _host_from_field(req, hosts)
        return
    fast = _ABSOLUTE_HTTP.fullmatch(target)
    if fast is not None:
        host, port_text, path = fast.groups()
        port = int(port_text) if port_text else 80
        if 0 < port < 65536 and (not hosts or valid_host_field(hosts[0])):
            if not path:
                path = "/"
            elif path[0] == "?":
                path = "/" + path
            req.form, req.scheme, req.path = "absolute", "http", path
            req.host = host.lower().rstrip(".")
            req.port = port
            return
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ClientProtocolError(400, "request target is neither absolute-form nor origin-form")
    # An https target is fetched over TLS by the proxy (issue #11: pooled TLS to origins).
    host, port, path = split_authority_path(rest)
    if not host:
        raise ClientProtocolError(400, "empty host in request target")
    if hosts and hosts[0]:
        # RFC 9112 §3.2: a Host field with an invalid value is a 400 even when ignored.
        _parse_authority(hosts[0])
    # RFC 9112 §3.2.2: with absolute-form the Host field is ignored and replaced.
    req.form, req.scheme, req.host, req.path = "absolute", scheme, host, path
    req.port = port if port is not None else DEFAULT_PORTS[scheme]


def split_authority_path(rest: str) -> tuple[str, int | None, str]:
    """An absolute URL after its ``scheme://`` -> (host as `_parse_authority` gives it,
    port or None, origin-form path). Raises `ClientProtocolError` for a bad authority."""
    cut = len(rest)
    for ch in "/?":
        i = rest.find(ch)
        if i != -1 and i < cut:
            cut = i
    host, port = _parse_authority(rest[:cut])
    path = rest[cut:]
    if not path.startswith("/"):
        path = "/" + path
    return host, port, path


def _check_host_field(value: str) -> bool:
    """True for an empty Host or a plain ``name[:port]`` one; False sends the caller to
    `_parse_authority` for the exact verdict."""
    if not value:
        return True
    m = _SIMPLE_AUTHORITY.fullmatch(value)
    return m is not None and (m.group(2) is None or 0 < int(m.group(2)) < 65536)


# Clients repeat the same Host on every request: short values (real host names) are
# remembered.
valid_host_field = memoised_when_short(_check_host_field, max_len=255, maxsize=256)


def _host_from_field(req: Request, hosts: Sequence[str]) -> None:
    if not hosts:
        return
    host, port = _parse_authority(hosts[0]) if hosts[0] else ("", None)
    req.host = host
    req.port = port if port is not None else 80


def _parse_request_framing(req: Request) -> None:
    headers = req.headers
    index = headers.by_name()
    if index.keys().isdisjoint(_REQUEST_FRAMING_FIELDS):
        # Most requests: no body, no Connection or Expect field: nothing to decide.
        if req.version == 0:
            req.keep_alive = False
        return
    te = index.get("transfer-encoding")
    cl = index.get("content-length")
    if te:
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        if req.version == 0:
            raise ClientProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
        if cl:
            raise ClientProtocolError(400, "both Transfer-Encoding and Content-Length")
        codings = _transfer_codings(te)
        if codings[-1] != "chunked" or codings.count("chunked") != 1:
            raise ClientProtocolError(400, "the final transfer coding must be chunked")
        if len(codings) != 1:
            raise ClientProtocolError(501, f"transfer coding {codings[0]!r} is not implemented")
        req.body = "chunked"
    elif cl:
        req.content_length = _parse_content_length(cl, True)
        req.body = "length" if req.content_length else "none"
    if req.version == 0 or says_close(index.get("connection")):
        req.keep_alive = False
    expect = index.get("expect")
    if expect and req.version >= 1:
        if [e.strip(_OWS).lower() for e in expect] != ["100-continue"]:
            raise ClientProtocolError(417, "only the 100-continue expectation is supported")
        req.expect_continue = True


def parse_response_head(head: bytes, request_method: str) -> Response:
    """Parse an origin's response head; framing follows RFC 9112 §6.3 for ``request_method``.

    Raises `OriginProtocolError`, which the proxy answers with a 502.
    """
    if len(head) > MAX_HEAD_BYTES:
        raise OriginProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
    if not head.endswith(b"\r\n\r\n"):
        raise OriginProtocolError("incomplete response head")
    first_crlf = head.find(b"\r\n")
    m = _STATUS_LINE.fullmatch(head, 0, first_crlf)
    if m is None:
        raise OriginProtocolError(f"malformed status line {head[: min(first_crlf, 80)]!r}")
    major, minor, status_b, reason_b = m.groups()
    if major != b"1":
        raise OriginProtocolError(f"origin answered with HTTP/{major.decode()}")
    status = int(status_b)
    if not 100 <= status <= 599:
        # RFC 9110 §15: codes outside 100..599 are invalid.
        raise OriginProtocolError(f"invalid status code {status}")
    resp = Response(
        0 if minor == b"0" else 1,
        status,
        (reason_b or b"").decode("latin-1"),
        parse_field_block(head[first_crlf + 2 : -2], False),
    )
    # The index is read directly: it was built with the fields, in the same pass.
    index = resp.headers.by_name()
    te = index.get("transfer-encoding")
    cl = index.get("content-length")
    if te and resp.version == 0:
        # RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
        raise OriginProtocolError("Transfer-Encoding in an HTTP/1.0 response")
    if status < 200 or status in (204, 304) or request_method == "HEAD":
        resp.body = "none"
        # A 1xx or a bodiless response still says whether the connection persists.
        if cl and status >= 200 and status != 204:
            # The representation's length is passed on to the client (RFC 9110 §8.6):
            # it must be one valid value, like any other Content-Length.
            resp.content_length = _parse_content_length(cl, False)
    elif request_method == "CONNECT" and status < 300:
        # RFC 9112 §6.3 item 2: a 2xx to CONNECT turns the connection into a tunnel.
        resp.body = "none"
    elif te:
        if cl:
            # §6.3 lets a recipient prefer Transfer-Encoding, but a response with both
            # is a smuggling attempt or a broken origin: refuse it (DESIGN.md §5 rule 3).
            raise OriginProtocolError("response has both Transfer-Encoding and Content-Length")
        codings = _transfer_codings(te)
        if codings != ["chunked"]:
            # Any other coding (gzip, ...) would reach the client unlabelled once the
            # hop-by-hop Transfer-Encoding field is dropped: refuse it instead.
            raise OriginProtocolError(f"unsupported transfer coding {', '.join(te)!r}")
        resp.body = "chunked"
    elif cl:
        resp.content_length = _parse_content_length(cl, False)
        resp.body = "length"
    else:
        resp.body = "close"
    tunnel = request_method == "CONNECT" and 200 <= status < 300
    resp.keep_alive = (
        resp.version >= 1
        and resp.body != "close"
        and not tunnel
        and not says_close(index.get("connection"))
    )
    return resp


def client_fields(resp: Response, via_name: str) -> Headers:
    """The fields of ``resp`` a proxy passes on: end-to-end ones plus its own Via entry
    (RFC 9110 §7.6.3); framing is added by whoever serialises the body.

    Their name index is derived from the response's, not built again: the cache's
    policy looks them up a dozen times, and no name is lower-cased twice for it.
    """
    headers = resp.headers
    index = headers.by_name()
    drop = headers.dropped_names(_NOT_RELAYED)
    # The kept (name, value) tuples themselves, not new ones (timeit: a quarter less).
    fields = [field for field in headers.items() if field[0].lower() not in drop]
    # Via names the protocol the response came in (RFC 9110 §7.6.3): HTTP/2 is "2".
    via = f"2 {via_name}" if resp.version == 2 else f"1.{resp.version} {via_name}"
    earlier = index.get("via")
    if earlier:
        via = ", ".join([*earlier, via])
    fields.append(("Via", via))
    # A copy less the few names dropped (a C copy, not a loop over every name); the
    # value lists are shared with the response's index: no Headers changes one in place.
    relayed = dict(index)
    for name in index.keys() & drop:
        del relayed[name]
    relayed["via"] = [via]
    return Headers.with_index(fields, relayed)


def response_fields_for_client(resp: Response, via_name: str) -> list[tuple[str, str]]:
    """The fields of ``resp`` a proxy passes on, as `client_fields` gives them."""
    return client_fields(resp, via_name).items()
