"""Responses cproxy writes itself: error pages and small protocol answers."""

from __future__ import annotations

from cproxy.http.heads import reason

__all__ = ["error_response", "escape", "reason"]

# What ``escape(text, quote=True)`` replaces, with the same entities. The stdlib's
# ``html`` module loads its table of 2,231 named entities (about half a MiB of a process)
# for ``unescape``, which cproxy never calls (issue #21).
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def escape(text: str) -> str:
    """``text`` safe inside HTML content and quoted attribute values."""
    return text.translate(_ESCAPES)


def error_response(
    status: int,
    message: str,
    *,
    hostname: str,
    close: bool,
    extra_headers: list[tuple[str, str]] | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete response with a short HTML page saying what happened."""
    phrase = reason(status)
    body = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{status} {phrase}</title></head>\n<body><h1>{status} {phrase}</h1>\n"
        f"<p>{escape(message)}</p>\n<hr><address>cproxy at {escape(hostname)}"
        "</address></body></html>\n"
    ).encode()
    lines = [
        f"HTTP/1.1 {status} {phrase}",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
    ]
    lines += [f"{n}: {v}" for n, v in extra_headers or ()]
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body
