"""Sans-I/O HTTP/1.1: bytes in, parsed messages out; messages in, bytes out.

Nothing here touches a socket, a greenlet or a clock (DESIGN.md §2).
"""

from cproxy.http.chunked import ChunkedDecoder, encode_chunk
from cproxy.http.message import (
    HOP_BY_HOP,
    Headers,
    Request,
    Response,
    find_head_end,
    parse_request_head,
    parse_response_head,
)

__all__ = [
    "HOP_BY_HOP",
    "ChunkedDecoder",
    "Headers",
    "Request",
    "Response",
    "encode_chunk",
    "find_head_end",
    "parse_request_head",
    "parse_response_head",
]
