"""The access log's line (cproxy/server/accesslog.py): quoted fields are escaped."""

from __future__ import annotations

from pathlib import Path

from cproxy.server.accesslog import AccessLog


def test_quotes_and_backslashes_in_quoted_fields_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog(str(path))
    try:
        log.write("127.0.0.1", 'GET /a"b HTTP/1.1', 200, 5, "r\\x", 'ua "q"', 0.0012, "new", "hit")
        log.write("127.0.0.1", "GET /plain HTTP/1.1", 200, 5, None, None, 0.0, "-")
    finally:
        log.close()
    first, second = path.read_text().splitlines()
    assert '"GET /a\\"b HTTP/1.1" 200 5 "r\\\\x" "ua \\"q\\"" 1.2ms origin=new cache=hit' in first
    assert second.endswith('"GET /plain HTTP/1.1" 200 5 "-" "-" 0.0ms origin=- cache=- proto=-')
