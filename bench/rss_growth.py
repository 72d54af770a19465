"""Where cproxy's resident memory grows under the benchmark's load (issue #21, peak RSS).

    python bench/rss_growth.py [--steps get1k,1k,get1m,1m,16k,browser,nostore] [--passes 2]
                               [--seconds 2] [--base DIR] [--no-access-log]

Starts the loopback nginx origin of bench/compare.py and one cproxy (default directives
but for the port, no admin listener, a 64 MB memory cache and, unless --no-access-log, an
access log file, as compare.py runs it; `--base DIR` runs the cproxy of another checkout
instead), then walks through ``--steps`` ``--passes`` times and prints, after each step,
the process's VmRSS, its peak VmHWM and its anonymous part (RssAnon: the heap, as opposed
to mapped files such as the interpreter and its extension modules). A step ``getX`` is
one request for X through the proxy (a miss the first time); any other step is a wrk
run of ``--seconds`` with 50 connections: ``1k``, ``16k``, ``1m`` cache hits (after
their miss), ``browser`` the 1 KiB hit with browser headers, ``nostore`` the pooled
1 KiB miss, and ``nostore-unique`` that miss with a distinct URL per request (the memos
filling), ``1k-unique`` a cacheable 1 KiB miss with a distinct URL per request (the memory
cache filling up to CacheMemory, then evicting: #21). compare.py gives the peak against
Squid's; this says which step grew it.

Needs nginx-light and wrk (Debian), like compare.py.
"""

from __future__ import annotations

import argparse
import tempfile
import urllib.request
from pathlib import Path

import benchlib as bl

STEPS = {
    "1k": ("/cache/1k", None, False),
    "16k": ("/cache/16k", None, False),
    "1m": ("/cache/1m", None, False),
    "browser": ("/cache/1k", bl.BROWSER_HEADERS, False),
    "nostore": ("/nostore/1k", None, False),
    "nostore-unique": ("/nostore/1k", None, True),
    "1k-unique": ("/cache/1k", None, True),
}


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM and RssAnon of ``pid`` from /proc, in KiB."""
    wanted = ("VmRSS", "VmHWM", "RssAnon")
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            found[name] = int(value.split()[0])
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", default="get1k,1k,get1m,1m,16k,browser,nostore")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--base", help="run the cproxy of this checkout instead of this one")
    p.add_argument("--no-access-log", action="store_true")
    args = p.parse_args()
    bl.require(tools=["nginx", "wrk", "taskset"])  # before anything runs: what is missing
    steps = args.steps.split(",")
    for step in steps:
        if step not in STEPS and step.removeprefix("get") not in STEPS:
            p.error(f"unknown step {step!r}; steps: {', '.join(STEPS)} and get<step>")

    servers: list[bl.Server] = []
    with tempfile.TemporaryDirectory(prefix="cproxy-bench-rss-") as scripts_dir:
        try:
            run(args, steps, servers, Path(scripts_dir))
        finally:
            for server in reversed(servers):
                server.stop()


def run(args: argparse.Namespace, steps: list[str], servers: list[bl.Server], tmp: Path) -> None:
    origin = bl.start_origin()
    servers.append(origin)
    repo = Path(args.base).resolve() if args.base else bl.REPO_DIR
    proxy = bl.start_cproxy(repo_dir=repo, access_log=not args.no_access_log)
    servers.append(proxy)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://{bl.LOOPBACK}:{proxy.port}"})
    )

    def show(label: str) -> None:
        m = memory_kib(proxy.proc.pid)
        print(
            f"{label:<24} VmRSS {m['VmRSS'] / 1024:6.2f} MiB  VmHWM "
            f"{m['VmHWM'] / 1024:6.2f}  RssAnon {m['RssAnon'] / 1024:6.2f}",
            flush=True,
        )

    show("started")
    for number in range(1, args.passes + 1):
        for step in steps:
            path, headers, unique = STEPS[step.removeprefix("get")]
            url = f"http://{bl.LOOPBACK}:{origin.port}{path}"
            if step.startswith("get"):
                with opener.open(url, timeout=10) as response:
                    response.read()
                shown = step
            else:
                script = bl.write_wrk_script(tmp / f"{step}.lua", url, headers, unique)
                r = bl.run_wrk(proxy.port, script, args.seconds)
                shown = f"{step} ({r['requests']:,} req)"
            show(f"{number}: {shown}")


if __name__ == "__main__":
    main()
