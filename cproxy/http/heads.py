"""Serialising message heads: the forwarded request head, the relayed response head,
interim (1xx) heads and the TRACE echo.

Every head cproxy sends is built here from a parsed message (DESIGN.md §5 rule 1: never
from the raw bytes), with the framing of the body cproxy itself sends (`cproxy.http.framing`).
"""

from __future__ import annotations

from http import HTTPStatus

from cproxy.http.framing import CHUNKED, CLOSE, LENGTH, NONE
from cproxy.http.message import NOT_FORWARDED, Request, Response

# Fields of a request never copied to the forwarded head: cproxy writes Host and Via
# itself, and answers Expect itself (RFC 9110 §10.1.1 lets a proxy do so).
_REWRITTEN_REQUEST_FIELDS = frozenset({"host", "expect", "via"})
_NOT_COPIED = NOT_FORWARDED | _REWRITTEN_REQUEST_FIELDS
# Methods whose request means to carry content: without a body they get an explicit
# Content-Length: 0 (RFC 9110 §8.6).
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` ("Unknown" for an unregistered code)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _framing_line(kind: str, length: int) -> str | None:
    """The field that frames a body cproxy sends, by framing kind (none: the head has
    none). Two comparisons and an f-string: written twice per miss, a table lookup and
    str.format cost twice as much."""
    if kind == LENGTH:
        return f"Content-Length: {length}"
    if kind == CHUNKED:
        return "Transfer-Encoding: chunked"
    return None


def forwarded_fields(req: Request, via_name: str) -> list[tuple[str, str]]:
    """The fields cproxy forwards with ``req``, whatever the protocol to the origin: its
    end-to-end fields (no hop-by-hop, framing, Host, Expect or Via) and the Via field with
    our entry appended. The HTTP/1.1 head (`origin_request_head`) adds the request line,
    Host and framing; the HTTP/2 header block adds pseudo-header fields instead."""
    headers = req.headers
    # One pass over the fields drops both kinds (each name is lower-cased once).
    fields = headers.end_to_end(_NOT_COPIED)
    own = f"1.{req.version} {via_name}"
    earlier = headers.get_values("via")
    fields.append(("Via", ", ".join([*earlier, own]) if earlier else own))
    return fields


def origin_request_head(req: Request, via_name: str) -> bytes:
    """The head cproxy sends to the origin for ``req``: its end-to-end fields, Host from
    the parsed target, our Via entry appended, and the framing of the body we send."""
    lines = [f"{req.method} {req.path} HTTP/1.1", f"Host: {req.host_header}"]
    lines += [f"{name}: {value}" for name, value in forwarded_fields(req, via_name)]
    framing = _framing_line(req.body, req.content_length)
    if framing is not None:
        lines.append(framing)
    elif req.method in _CONTENT_METHODS:
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def relayed_response_head(
    resp: Response,
    fields: list[tuple[str, str]],
    framing: str,
    *,
    keep: bool,
    extra: list[str] | None = None,
) -> bytes:
    """The head of ``resp`` for the client: ``fields`` (its end-to-end fields and Via),
    ``extra`` lines, the framing line for ``framing`` (see `framing.relay_framing`), and
    ``Connection: close`` when the connection ends after it."""
    lines = [f"HTTP/1.1 {resp.status} {resp.reason or reason(resp.status)}"]
    lines += [f"{n}: {v}" for n, v in fields]
    if extra:
        lines += extra
    if framing == NONE:
        # HEAD and 304 keep the Content-Length of the representation (RFC 9110 §8.6),
        # as the parser validated it: one canonical number.
        if "content-length" in resp.headers and resp.status >= 200 and resp.status != 204:
            lines.append(f"Content-Length: {resp.content_length}")
    else:
        line = _framing_line(framing, resp.content_length)
        if line is not None:
            lines.append(line)
    if not keep or framing == CLOSE:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def interim_response_head(resp: Response) -> bytes:
    """A 1xx response relayed to the client: its status and end-to-end fields."""
    return (
        f"HTTP/1.1 {resp.status} {resp.reason}\r\n".encode("latin-1")
        + b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in resp.headers.end_to_end())
        + b"\r\n"
    )


def trace_echo(req: Request) -> bytes:
    """The request as received (its parsed head), the body of an answer to TRACE
    (RFC 9110 §9.3.8)."""
    return (
        f"{req.method} {req.target} HTTP/1.{req.version}\r\n"
        + "".join(f"{n}: {v}\r\n" for n, v in req.headers.items())
        + "\r\n"
    ).encode("latin-1")
