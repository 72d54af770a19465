"""HTTPS interception's certificates and decisions (issue #19), without the server.

- ``ca``: create and load the interception CA, with its safety checks;
- ``leaves``: one leaf key per process, leaf certificates per host, a bounded LRU of ready
  server-side SSL contexts;
- ``clienthello``: sans-I/O reading of the ClientHello peeked after CONNECT;
- ``pinning``: which (client, host) pairs to splice after a client refused our certificate.

The server (cproxy/server/) uses these; nothing here imports it.
"""
