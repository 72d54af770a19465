"""Debian's redis-server, started by the tests on free loopback ports (no persistence).

`RedisServer` is one server (stop, start again on the same port, SIGSTOP/SIGCONT);
`RedisCluster` is three masters in cluster mode, joined with ``redis-cli --cluster create``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import redis

from tests.support import wait_for

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class RedisServer:
    """One redis-server on 127.0.0.1; a context manager."""

    def __init__(
        self, workdir: Path, *extra: str, port: int | None = None, password: str | None = None
    ) -> None:
        self.password = password
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, password=self.password, socket_timeout=10
        )

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--enable-debug-command",
                "local",
                *(["--requirepass", self.password] if self.password else []),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(self._answers, what=f"redis-server on port {self.port}")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with status {self.proc.returncode}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a stopped server cannot end
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def stalled(self) -> bool:
        """Whether the server leaves an inline PING unanswered for 200 ms (it is asleep in
        a DEBUG SLEEP, or stopped). A raw socket, because redis-py retries timeouts."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            try:
                sock.recv(64)
            except TimeoutError:
                return True
        return False

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RedisCluster:
    """Three masters in cluster mode on loopback; a context manager."""

    def __init__(self, workdir: Path) -> None:
        self.servers = [
            RedisServer(
                workdir / f"node{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(workdir / f"node{i}" / "nodes.conf"),
                port=free_cluster_port(),
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        seeds = ",".join(f"127.0.0.1:{s.port}" for s in self.servers)
        return f"redis+cluster://{seeds}"

    def __enter__(self) -> RedisCluster:
        try:
            self._create()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _create(self) -> None:
        for server in self.servers:
            server.start()
        nodes = [f"127.0.0.1:{s.port}" for s in self.servers]
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *nodes, "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        wait_for(self._ok, timeout_s=30, what="the cluster to be ok")

    def _ok(self) -> bool:
        for server in self.servers:
            info = server.client().execute_command("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
        return True

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            server.stop()
