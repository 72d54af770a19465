"""What a new intercepted host costs cproxy in certificates (issue #19), no network at all.

    python bench/leaf_cost.py [--hosts 500]

Per new host, medians over ``--hosts`` names:

1. the CA's ECDSA signature of a leaf (``make_leaf``), and for comparison a key generation
   (what one key per host would add);
2. a ready server context: ``ssl.SSLContext`` + ``load_cert_chain`` from PEM files written
   to (and deleted from) a private directory, as ``LeafCache`` does; the same loading from
   a memfd (``/proc/self/fd/N``, Linux only, no file on disk); the bare context; the file
   writes alone;
3. the whole ``LeafCache.context_for`` miss and hit;
4. memory per cached context (RSS growth over ``--hosts`` entries).

Prints one line per figure and a JSON summary.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cproxy.intercept.ca import create_ca
from cproxy.intercept.leaves import LeafCache, leaf_key, make_leaf, parse_leaf_name


def median_us(n: int, step: Callable[[int], object]) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=500)
    n = parser.parse_args().hosts
    ca = create_ca(Path(tempfile.mkdtemp()) / "ca")
    key_pem = leaf_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    now = time.time()
    figures: dict[str, float] = {}
    figures["sign_us"] = median_us(
        n, lambda i: make_leaf(ca, parse_leaf_name(f"s{i}.example"), now=now)
    )
    figures["keygen_us"] = median_us(n, lambda i: ec.generate_private_key(ec.SECP256R1()))
    chains = [
        make_leaf(ca, parse_leaf_name(f"c{i}.example"), now=now).public_bytes(
            serialization.Encoding.PEM
        )
        + ca.cert_pem
        for i in range(n)
    ]
    private = tempfile.mkdtemp()

    def with_files(i: int) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert_file, key_file = os.path.join(private, "c.pem"), os.path.join(private, "k.pem")
        with open(cert_file, "wb") as f:
            f.write(chains[i])
        with open(key_file, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert_file, key_file)
        os.unlink(cert_file)
        os.unlink(key_file)

    def with_memfd(i: int) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        fd = os.memfd_create("leaf")
        try:
            os.write(fd, chains[i] + key_pem)
            ctx.load_cert_chain(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)

    def files_only(i: int) -> None:
        for name, data in (("c.pem", chains[i]), ("k.pem", key_pem)):
            path = os.path.join(private, name)
            with open(path, "wb") as f:
                f.write(data)
            os.unlink(path)

    figures["context_files_us"] = median_us(n, with_files)
    if hasattr(os, "memfd_create"):
        figures["context_memfd_us"] = median_us(n, with_memfd)
    figures["bare_context_us"] = median_us(n, lambda i: ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    figures["file_writes_us"] = median_us(n, files_only)

    cache = LeafCache(ca, n + 10)
    cache.context_for("warm.example")
    gc.collect()
    before = rss_bytes()
    figures["miss_us"] = median_us(n, lambda i: cache.context_for(f"m{i}.example"))
    gc.collect()
    figures["kib_per_entry"] = (rss_bytes() - before) / n / 1024
    figures["hit_us"] = median_us(n, lambda i: cache.context_for(f"m{i}.example"))
    cache.close()

    print(f"OpenSSL: {ssl.OPENSSL_VERSION}; {n} hosts; medians")
    for name, value in figures.items():
        print(f"  {name:18} {value:10.1f}")
    print(json.dumps({k: round(v, 1) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
