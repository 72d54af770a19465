"""One authority per intercepted connection (DESIGN.md §5 rule 13), as a pure function.

Inside an intercepted ``CONNECT a.example:443`` every request is for ``https://a.example``:
clients send origin-form targets (``GET /path``) with a Host field, as they would to the
origin itself. `bind_to_authority` turns such a request into the absolute request cproxy
serves everywhere else (scheme, host, port, path filled, ``form`` absolute, ``target``
the URL the access log shows), and refuses with 421 Misdirected Request (RFC 9110
§15.5.20) a request that names another authority, in its Host field or in an
absolute-form target, before anything (the fast lane, the cache, an origin) sees it: no
client can put an entry in the cache for a host it did not connect to, or reach a
destination the CONNECT's checks refused.
"""

from __future__ import annotations

from cproxy.errors import ClientProtocolError
from cproxy.http.message import DEFAULT_PORTS, Request, parse_authority


def _same(host: str, port: int, want_host: str, want_port: int) -> bool:
    return host == want_host and port == want_port


def misdirected(host: str, port: int) -> ClientProtocolError:
    """The 421 for a request naming another authority than ``host:port``."""
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return ClientProtocolError(
        421, f"This connection is for {shown} only; open another one for other hosts."
    )


def bind_to_authority(req: Request, scheme: str, host: str, port: int) -> None:
    """Bind ``req`` (parsed by `parse_request_head`) to ``scheme://host:port`` in place.

    ``host`` is lower-case without brackets (as a parsed CONNECT target gives it). A
    Host field or absolute-form target that names the same authority, with the port
    written or left to the scheme's default, is accepted; any other authority raises
    `ClientProtocolError` 421. CONNECT inside the connection is refused (405): a tunnel
    in a tunnel has no use a browser makes. Raises nothing else; changes ``req`` only
    when it is accepted.
    """
    default = DEFAULT_PORTS[scheme]
    if req.method == "CONNECT":
        raise ClientProtocolError(405, "CONNECT is not allowed inside an intercepted connection.")
    if req.form == "absolute":
        if not _same(req.host, req.port, host, port) or req.scheme != scheme:
            raise misdirected(host, port)
    else:
        # origin-form or asterisk-form: the Host field names the authority (the parser read
        # it with http's default port, so it is read again with this scheme's).
        value = req.headers.get("host")
        if value:
            named_host, named_port = parse_authority(value)
            if not _same(named_host, default if named_port is None else named_port, host, port):
                raise misdirected(host, port)
        # No Host (HTTP/1.0) or an empty one: the connection names the authority.
        req.form = "absolute"
    req.scheme, req.host, req.port = scheme, host, port
    if req.path == "*":
        # OPTIONS * stays asterisk-form towards the origin.
        req.form = "asterisk"
        req.target = "*"
        return
    req.target = req.url
