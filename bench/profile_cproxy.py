"""Profile cproxy under wrk load with py-spy and print where its time goes.

    python bench/profile_cproxy.py [--path /cache/1k] [--seconds 10] [--native]

Starts the loopback nginx origin (bench/benchlib.py) and cproxy (CPU 0), warms up, then
runs wrk (50 connections, CPU 1) while `py-spy record --format raw` samples cproxy. Prints
the top functions by own time and by inclusive time, as a percentage of the samples in
which cproxy was running (py-spy leaves out the idle hub waiting in epoll), and keeps the
collapsed stacks (bench/results/, loadable in speedscope or flamegraph.pl).

Needs py-spy (`pip install py-spy`; not a project dependency) plus nginx-light and wrk.
/cache/1k is the 1 KiB hit path, /nostore/1k the miss path over the origin pool.
It profiles the sources as pure Python (CPROXY_COMPILE=0): py-spy sees Python frames only,
and the compiled modules have none.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import benchlib as bl

os.environ["CPROXY_COMPILE"] = "0"

_LINE = re.compile(r":\d+\)$")


def top_functions(collapsed: Path, n: int, by_line: bool = False) -> tuple[int, list, list]:
    """Samples, and the top ``n`` frames by own and inclusive samples (per function, or line)."""
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not by_line:
            frames = [_LINE.sub(")", f) for f in frames]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for f in set(frames):
            inclusive[f] += count
    return total, own.most_common(n), inclusive.most_common(n)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--path", default="/cache/1k")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="include C frames (slower)")
    p.add_argument("--access-log", action="store_true", help="cproxy logging to a file")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--by-line", action="store_true", help="per source line, not per function")
    p.add_argument("--out", default=str(bl.BENCH_DIR / "results"))
    args = p.parse_args()
    bl.require(tools=["nginx", "wrk", "taskset", "py-spy"])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = args.path.strip("/").replace("/", "_")
    collapsed = out_dir / f"profile-{name}-{time.strftime('%Y%m%d-%H%M%S')}.txt"

    origin = bl.start_origin(cpu="1")
    proxy = None
    try:
        proxy = bl.start_cproxy(cpu="0", access_log=args.access_log)
        with tempfile.TemporaryDirectory(prefix="cproxy-bench-") as tmp:
            script = bl.write_wrk_script(
                Path(tmp) / "req.lua", f"http://{bl.LOOPBACK}:{origin.port}{args.path}"
            )
            bl.run_wrk(proxy.port, script, 2, args.connections, "1")
            cmd = [
                "py-spy", "record", "--pid", str(proxy.proc.pid), "--rate", str(args.rate),
                "--duration", str(max(1, round(args.seconds))), "--format", "raw",
                "--output", str(collapsed), "--nonblocking",
            ]  # fmt: skip
            if args.native:
                cmd.append("--native")
            spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            cpu = proxy.cpu_s()
            r = bl.run_wrk(proxy.port, script, args.seconds, args.connections, "1")
            cpu = proxy.cpu_s() - cpu
            try:
                spy.wait(timeout=60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
    finally:
        if proxy is not None:
            proxy.stop()
        origin.stop()
    print(
        f"GET {args.path}: {r['rps']:,.0f} req/s under py-spy, p50 {r['p50_us'] / 1000:.2f} ms, "
        f"errors {r['errors']}, CPU {cpu / max(r['requests'], 1) * 1e6:.0f} µs/req"
    )
    if not collapsed.exists():
        print("py-spy wrote nothing:", spy.stderr.read().decode() if spy.stderr else "")
        return 1
    total, own, inclusive = top_functions(collapsed, args.top, args.by_line)
    print(f"{total} samples with cproxy running; collapsed stacks: {collapsed}")
    print("\nown time:")
    for frame, count in own:
        print(f"  {count / total * 100:5.1f}%  {frame}")
    print("\ninclusive time:")  # a recursive function counts once per sample
    for frame, count in inclusive:
        print(f"  {count / total * 100:5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
