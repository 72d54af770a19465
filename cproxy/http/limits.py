"""Bounds on what cproxy accepts from clients and origins (DESIGN.md §5 rule 6).

Each limit is a constant with its unit in its name and the reason for its value.
"""

# 8 KiB is what nginx (large_client_header_buffers) and Apache (LimitRequestLine)
# accept; longer request lines are almost always attacks or broken clients. -> 414
MAX_REQUEST_LINE_BYTES = 8192

# The whole request or response head. 64 KiB leaves room for large cookies while
# bounding the memory one slow client can pin. -> 431 (request) / 502 (response)
MAX_HEAD_BYTES = 65536

# Browsers send 10-25 fields; 100 is Apache's LimitRequestFields. -> 431
MAX_HEADER_COUNT = 100

# A chunk-size line with extensions; real ones are under 20 bytes.
MAX_CHUNK_LINE_BYTES = 4096

# 16 hex digits = 2**64 - 1; more digits can only be an overflow attempt.
MAX_CHUNK_SIZE_DIGITS = 16

# Trailer section of a chunked body (parsed and dropped, never forwarded).
MAX_TRAILER_BYTES = 16384

# A Content-Length longer than 18 digits does not fit a signed 64-bit integer.
MAX_CONTENT_LENGTH_DIGITS = 18

# Size of each read from a socket while streaming bodies: large enough to keep
# system calls few, small enough that 1,000 connections stay within a few tens of MiB.
IO_CHUNK_BYTES = 65536
