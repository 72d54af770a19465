"""Shared pieces of the benchmarks: the loopback origin, the proxies under test, wrk, /proc.

Nothing here installs anything. Every server binds 127.0.0.1, is started as its own
subprocess and stopped by its own process id; every load run is bounded in time.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Which Debian package brings each tool the benchmarks run.
DEBIAN_PACKAGES = {
    "nginx": "nginx-light (or nginx)",
    "squid": "squid",
    "wrk": "wrk",
    "taskset": "util-linux",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "apt-get": "apt",
    "dpkg-deb": "dpkg",
    "dpkg-scanpackages": "dpkg-dev",
}

#: the origin's files: name -> size in bytes
FILES = {"1k": 1024, "16k": 16 * 1024, "1m": 1024 * 1024}

#: ten request headers a browser sends with a page load; none of them bypasses a cache
BROWSER_HEADERS = {
    "User-Agent": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/131.0.0.0 Safari/537.36"
    ),
    "Accept": (
        "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        "image/apng,*/*;q=0.8"
    ),
    "Accept-Language": "en-GB,en;q=0.9,de;q=0.8",
    "Accept-Encoding": "gzip, deflate",
    "Cookie": "session=3f2a9c0d1e7b4a6f; theme=dark; consent=yes",
    "Referer": "http://127.0.0.1/index.html",
    "Upgrade-Insecure-Requests": "1",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "same-origin",
}


def missing_tools(names: Sequence[str]) -> list[str]:
    return [n for n in names if shutil.which(n) is None and not Path(f"/usr/sbin/{n}").exists()]


# Tools that come from pip rather than Debian (not dependencies of cproxy).
PIP_TOOLS = {"py-spy": "py-spy"}

# What installs the Python packages the benchmarks import: cproxy's own dependencies and
# its test extras (trustme, ...), at the versions the tests passed with.
PIP_INSTALL = f"{sys.executable} -m pip install -c {REPO_DIR}/constraints.txt '{REPO_DIR}[test]'"


def missing_modules(names: Sequence[str]) -> list[str]:
    """The Python modules of ``names`` this interpreter cannot import."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def cproxy_import_problem() -> str | None:
    """What stops ``python -m cproxy`` from starting with this interpreter (as the
    benchmarks run it, from the source tree), e.g. a dependency not installed; None if
    nothing does."""
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    probe = subprocess.run(
        [sys.executable, "-c", "import cproxy.server.proxy"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit status {probe.returncode}"


def require(tools: Sequence[str] = (), modules: Sequence[str] = (), cproxy: bool = True) -> None:
    """Check what a benchmark needs before it starts anything; when something is missing,
    print every missing piece with the command that installs it and exit with status 2.

    ``tools``: programs (Debian packages, or pip for PIP_TOOLS); ``modules``: Python
    modules this benchmark imports; ``cproxy``: whether it runs cproxy (then cproxy's
    own dependencies must import too)."""
    problems = []
    missing = [t for t in missing_tools(tools) if t not in PIP_TOOLS]
    if missing:
        pkgs = " ".join(sorted({DEBIAN_PACKAGES.get(n, n).split()[0] for n in missing}))
        problems.append(
            f"missing programs: {', '.join(missing)}. Install with: apt-get install {pkgs}\n"
            f"  (Debian packages: {', '.join(DEBIAN_PACKAGES.get(n, n) for n in missing)})"
        )
    pip_tools = [t for t in missing_tools(tools) if t in PIP_TOOLS]
    if pip_tools:
        pkgs = " ".join(PIP_TOOLS[t] for t in pip_tools)
        problems.append(
            f"missing programs: {', '.join(pip_tools)}. Install with: "
            f"{sys.executable} -m pip install {pkgs} (a tool, not a dependency of cproxy)"
        )
    mods = missing_modules(modules)
    if mods:
        problems.append(
            f"missing Python packages: {', '.join(mods)} (for {sys.executable}). "
            f"Install with: {PIP_INSTALL}"
        )
    if cproxy:
        problem = cproxy_import_problem()
        if problem is not None:
            problems.append(
                f"cproxy cannot start with {sys.executable}: {problem}. Install its "
                f"dependencies with: {PIP_INSTALL}"
            )
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(2)


def require_tools(names: list[str]) -> None:
    """`require` for programs alone (and cproxy's dependencies)."""
    require(tools=names)


def tool(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout_s: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what or proc.args} exited with status {proc.returncode}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what or proc.args} did not listen on {port} within {timeout_s:.0f} s")


def make_tmp(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"cproxy-bench-{prefix}-"))
    # nginx workers and Squid drop root rights (nobody / proxy): let them in.
    d.chmod(0o777)
    return d


# -- /proc ---------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_times(pids: list[int]) -> tuple[float, float]:
    """(utime, stime) of ``pids`` summed, in seconds: user space and kernel."""
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime (field 14 of stat)
        system += int(fields[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of ``pids``, in seconds."""
    return sum(cpu_times(pids))


def peak_rss_kib(pids: list[int]) -> int:
    """Sum of VmHWM (peak resident set) over ``pids``, in KiB."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        if m:
            total += int(m.group(1))
    return total


# -- servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """A subprocess we started; stopped by its own pid."""

    name: str
    port: int
    proc: subprocess.Popen
    tmp: Path
    log: Path
    extra: dict = field(default_factory=dict)

    def pids(self) -> list[int]:
        return process_tree(self.proc.pid)

    def cpu_s(self) -> float:
        return cpu_seconds(self.pids())

    def cpu_times(self) -> tuple[float, float]:
        return cpu_times(self.pids())

    def peak_rss_kib(self) -> int:
        return peak_rss_kib(self.pids())

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.pids()):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _spawn(cmd: list[str], cpu: str | None, log: Path, cwd: Path | None = None):
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd
        )


def _nginx_common(tmp: Path) -> str:
    return f"""
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
"""


def _nginx_http_common(tmp: Path, access_log: bool = False) -> str:
    log = f"access_log {tmp}/access.log combined" if access_log else "access_log off"
    return f"""
    {log};
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy_temp;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 600s;
"""


def start_origin(cpu: str | None = "1", no_store_only: bool = False) -> Server:
    """nginx on loopback serving FILES under /cache/ (max-age=3600) and /nostore/ (no-store).

    /nginx_status is nginx's stub_status: its "accepts" counter is how many connections
    the origin accepted, which is how the benchmarks count origin connections opened.
    Keep-alive limits are raised so the origin itself never closes a pooled connection.
    """
    tmp = make_tmp("origin")
    files = tmp / "files"
    files.mkdir()
    files.chmod(0o755)
    for name, size in FILES.items():
        (files / name).write_bytes(b"o" * size)
        (files / name).chmod(0o644)
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        _nginx_common(tmp)
        + f"""
http {{
{_nginx_http_common(tmp)}
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location /cache/ {{ alias {files}/; add_header Cache-Control "max-age=3600"; }}
        location /nostore/ {{ alias {files}/; add_header Cache-Control "no-store"; }}
        location = /nginx_status {{ stub_status; }}
    }}
}}
"""
    )
    log = tmp / "stdout.log"
    proc = _spawn(
        [tool("nginx"), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)], cpu, log
    )
    server = Server("origin", port, proc, tmp, log)
    wait_port(port, proc, what="origin nginx")
    return server


def origin_accepts(origin: Server) -> int:
    """nginx's accepted-connection counter (this query's own connection included)."""
    conn = http.client.HTTPConnection(LOOPBACK, origin.port, timeout=5)
    try:
        conn.request("GET", "/nginx_status", headers={"Connection": "close"})
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    # "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \n..."
    return int(text.splitlines()[2].split()[0])


_DEPLOYED: dict[Path, Path] = {}


def deployed_tree(repo_dir: Path = REPO_DIR) -> Path:
    """The checkout as the README's install runs it: a copy with the compiled modules that
    setup.py's default build makes put beside the sources (as scripts/test-compiled does),
    cached under bench/results/builds by a digest of what goes into the build.

    ``CPROXY_COMPILE=0`` in the environment (as for the install) measures the sources as
    pure Python. A build that falls back to pure Python (no gcc or python3-dev) says so and
    the sources are measured: the report's "build" line tells which ran.
    """
    repo_dir = repo_dir.resolve()
    if os.environ.get("CPROXY_COMPILE") == "0":
        return repo_dir
    if repo_dir in _DEPLOYED:
        return _DEPLOYED[repo_dir]
    if not (repo_dir / "setup.py").exists():  # a checkout from before the compiled build
        _DEPLOYED[repo_dir] = repo_dir
        return repo_dir
    import hashlib
    import zipfile

    digest = hashlib.sha256()
    inputs = sorted((repo_dir / "cproxy").rglob("*.py"))
    inputs += [repo_dir / name for name in ("setup.py", "setup.cfg", "pyproject.toml")]
    for path in inputs:
        digest.update(str(path.relative_to(repo_dir)).encode() + b"\0" + path.read_bytes())
    tree = BENCH_DIR / "results" / "builds" / digest.hexdigest()[:16]
    if not (tree / "BUILT").exists():
        shutil.rmtree(tree, ignore_errors=True)
        print(f"bench: compiling {repo_dir} as the install does (about 90 s)...", flush=True)
        skip = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "results")
        shutil.copytree(repo_dir, tree, ignore=skip)
        wheels = tree / "wheel"
        env = dict(os.environ, CPROXY_COMPILE="1")
        # As the README's install builds it (scripts/test-compiled says why): the pip of a
        # new virtual environment with nothing installed, in its isolated build.
        subprocess.run([sys.executable, "-m", "venv", str(tree / "buildenv")], check=True)
        cmd = [str(tree / "buildenv" / "bin" / "python"), "-m", "pip", "wheel", "-q", "--no-deps"]
        done = subprocess.run(
            [*cmd, "-w", str(wheels), "."], cwd=tree, env=env, capture_output=True, timeout=900
        )
        found = list(wheels.glob("cproxy-*.whl")) if done.returncode == 0 else []
        compiled = []
        if found:
            with zipfile.ZipFile(found[0]) as whl:
                compiled = [n for n in whl.namelist() if n.endswith(".so")]
                for name in compiled:
                    whl.extract(name, tree)
        if not compiled:
            print("bench: the compiled build failed; measuring the sources as pure Python")
            print(done.stderr.decode(errors="replace")[-2000:])
            _DEPLOYED[repo_dir] = repo_dir
            return repo_dir
        (tree / "BUILT").write_text(f"{len(compiled)} compiled modules\n")
    _DEPLOYED[repo_dir] = tree
    return tree


def cproxy_build(tree: Path) -> str:
    """What ``cproxy --version`` says of the build at ``tree``: compiled or pure Python."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(  # in tree: ``-m`` puts the working directory first on the path
        [sys.executable, "-m", "cproxy", "--version"],
        env=env,
        cwd=tree,
        capture_output=True,
        timeout=60,
    )
    return out.stdout.decode().strip()


def start_cproxy(
    cache_memory_mb: int = 64,
    connect_ports: tuple[int, ...] = (),
    cpu: str | None = "0",
    repo_dir: Path = REPO_DIR,
    access_log: bool = False,
    **directives: str,
) -> Server:
    """cproxy as a subprocess (`python -m cproxy -c FILE`), its own directive file in a temp dir.

    Directives not given keep their defaults, except: no admin listener, and the access
    log is a file in the temp dir with ``access_log`` (as deployed), else off.
    ``repo_dir`` is the checkout whose cproxy runs (another one, say a `git worktree` of an
    older commit, for an A/B comparison in one run), as installed: compiled, unless
    ``CPROXY_COMPILE=0`` (``deployed_tree``).
    """
    tmp = make_tmp("cproxy")
    port = free_port()
    lines = {
        "Port": str(port),
        "BindAddress": LOOPBACK,
        "AdminPort": "0",
        "AccessLog": str(tmp / "access.log") if access_log else "",
        "LogLevel": "warning",
        "CacheMemory": f"{cache_memory_mb} M",
    }
    if connect_ports:
        lines["ConnectPorts"] = " ".join(str(p) for p in (443, *connect_ports))
    lines.update(directives)
    conf = tmp / "cproxy.conf"
    conf.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()))
    log = tmp / "cproxy.log"
    env = dict(os.environ, PYTHONPATH=str(deployed_tree(repo_dir)))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "cproxy", "-c", str(conf)]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp,
        )
    server = Server("cproxy", port, proc, tmp, log, {"conf": lines})
    wait_port(port, proc, what="cproxy")
    return server


def start_toy(cpu: str | None = "0") -> Server:
    """bench/toy_proxy.py: the floor of what a gevent proxy can do here (hits only matter)."""
    tmp = make_tmp("toy")
    port = free_port()
    log = tmp / "toy.log"
    proc = _spawn([sys.executable, str(BENCH_DIR / "toy_proxy.py"), str(port)], cpu, log)
    server = Server("toy", port, proc, tmp, log)
    wait_port(port, proc, what="toy proxy")
    return server


def start_passthrough(cpu: str | None = "0") -> Server:
    """bench/passthrough_proxy.py: the floor of a pooled gevent miss (caches nothing)."""
    tmp = make_tmp("floor")
    port = free_port()
    log = tmp / "floor.log"
    proc = _spawn([sys.executable, str(BENCH_DIR / "passthrough_proxy.py"), str(port)], cpu, log)
    server = Server("floor", port, proc, tmp, log)
    wait_port(port, proc, what="pass-through floor proxy")
    return server


def start_squid(
    cache_memory_mb: int = 64,
    connect_ports: tuple[int, ...] = (),
    cpu: str | None = "0",
    persistent: bool = True,
    access_log: bool = False,
) -> Server:
    """Squid, memory cache only, one process (-N, foreground), config and logs in a temp dir.
    ``access_log``: Squid's default logging (its log_file_daemon helper writing the native
    format, as Debian's squid.conf has it), else none."""
    tmp = make_tmp("squid")
    port = free_port()
    ssl_ports = " ".join(str(p) for p in (443, *connect_ports))
    onoff = "on" if persistent else "off"
    squid_log = f"daemon:{tmp}/access.log squid" if access_log else "none"
    conf = f"""
http_port {LOOPBACK}:{port}
workers 1
cache_mem {cache_memory_mb} MB
maximum_object_size_in_memory 2 MB
maximum_object_size 2 MB
memory_cache_mode always
# no cache_dir: memory cache only
acl bench_ssl_ports port {ssl_ports}
acl bench_safe_ports port 80 443 1025-65535
acl bench_connect method CONNECT
http_access deny !bench_safe_ports
http_access deny bench_connect !bench_ssl_ports
http_access allow localhost
http_access deny all
server_persistent_connections {onoff}
client_persistent_connections on
"""
    return run_squid(tmp, port, conf, cpu, squid_log)


def run_squid(
    tmp: Path, port: int, conf: str, cpu: str | None, access_log: str, extra: dict | None = None
) -> Server:
    """Start Squid on ``port`` with the directives ``conf`` and what every benchmark's Squid
    shares (files in ``tmp``, ``access_log`` as its access_log line's value, no helpers
    or disk state of its own), in the foreground (-N), and wait until it listens."""
    (tmp / "squid.conf").write_text(
        conf
        + f"""pid_filename {tmp}/squid.pid
cache_log {tmp}/cache.log
access_log {access_log}
cache_store_log none
logfile_rotate 0
coredump_dir {tmp}
netdb_filename none
pinger_enable off
shutdown_lifetime 0 seconds
max_filedescriptors 8192
"""
    )
    log = tmp / "stdout.log"
    proc = _spawn([tool("squid"), "-N", "-f", str(tmp / "squid.conf")], cpu, log, cwd=tmp)
    server = Server("squid", port, proc, tmp, log, extra or {})
    wait_port(port, proc, timeout_s=30, what="squid")
    return server


def start_nginx_proxy(
    origin_port: int, cache_memory_mb: int = 64, cpu: str | None = "0", access_log: bool = False
) -> Server:
    """nginx as a caching forward proxy for the benchmark's one origin (``access_log``:
    the combined format to a file in the temp dir, else off).

    A true forward proxy (`proxy_pass http://$http_host$request_uri`) needs a `resolver`;
    since the origin is fixed, requests go to an `upstream` block pointing at it instead,
    with keep-alive connections to it. The cache lives in a temp directory.
    """
    tmp = make_tmp("nginxproxy")
    port = free_port()
    conf = tmp / "nginx.conf"
    (tmp / "cache").mkdir()
    (tmp / "cache").chmod(0o777)
    conf.write_text(
        _nginx_common(tmp)
        + f"""
http {{
{_nginx_http_common(tmp, access_log)}
    proxy_cache_path {tmp}/cache levels=1:2 keys_zone=bench:16m max_size={cache_memory_mb}m
                     inactive=1h use_temp_path=off;
    upstream origin_upstream {{
        server {LOOPBACK}:{origin_port};
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
    }}
    server {{
        listen {LOOPBACK}:{port} backlog=4096;
        location / {{
            proxy_pass http://origin_upstream$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_cache bench;
            proxy_cache_key $http_host$request_uri;
            proxy_buffering on;
        }}
    }}
}}
"""
    )
    log = tmp / "stdout.log"
    proc = _spawn(
        [tool("nginx"), "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(conf)], cpu, log
    )
    server = Server("nginx", port, proc, tmp, log)
    wait_port(port, proc, what="nginx proxy")
    return server


def start_aux(args: list[str], port: int, cpu: str | None = "1") -> Server:
    """A bench/netaux.py helper (relay or source) as its own process."""
    tmp = make_tmp("aux")
    log = tmp / "aux.log"
    proc = _spawn([sys.executable, str(BENCH_DIR / "netaux.py"), *args], cpu, log)
    server = Server(args[0], port, proc, tmp, log)
    wait_port(port, proc, what=f"netaux {args[0]}")
    return server


# -- wrk -----------------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.mean, latency.max))
end
"""


def _lua_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_wrk_script(
    path: Path, url: str, headers: dict[str, str] | None = None, unique_query: bool = False
) -> Path:
    """A wrk Lua script sending absolute-form GETs for ``url`` (as to a forward proxy).

    ``unique_query`` appends ``?n=<counter>`` so that no two requests share a URL (no
    request collapsing, no cache hits)."""
    host = url.split("://", 1)[1].split("/", 1)[0]
    lines = [
        'wrk.method = "GET"',
        f"wrk.path = {_lua_string(url)}",
        f'wrk.headers["Host"] = {_lua_string(host)}',
    ]
    for name, value in (headers or {}).items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if unique_query:
        lines += [
            "local n = 0",
            "request = function()",
            "  n = n + 1",
            f'  return wrk.format(nil, {_lua_string(url)} .. "?n=" .. n)',
            "end",
        ]
    path.write_text("\n".join(lines) + "\n" + _WRK_DONE)
    return path


def run_wrk(
    proxy_port: int,
    script: Path,
    seconds: float,
    connections: int = 50,
    cpu: str | None = "1",
    threads: int = 1,
) -> dict:
    """Run wrk (bounded by ``seconds``) against the proxy; returns its figures."""
    cmd = [
        tool("wrk"),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://{LOOPBACK}:{proxy_port}/",
    ]
    if cpu is not None:
        cmd = ["taskset", "-c", cpu, *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON ") :])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6) if r["duration_us"] else 0.0
            r["errors"] = r["status"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
            return r
    raise RuntimeError(f"wrk gave no figures: {out.stdout}\n{out.stderr}")


def versions() -> dict[str, str]:
    """Versions of the tools, for the record."""

    def first_line(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        text = (p.stdout + p.stderr).strip()
        return text.splitlines()[0] if text else "?"

    try:
        import gevent

        gv = gevent.__version__
    except ImportError:
        gv = "?"
    return {
        "python": sys.version.split()[0],
        "gevent": gv,
        "nginx": first_line([tool("nginx"), "-v"]),
        "squid": first_line([tool("squid"), "-v"]),
        "wrk": first_line([tool("wrk"), "-v"]),
        "cpus": str(os.cpu_count()),
        "kernel": os.uname().release,
    }
