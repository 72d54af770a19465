from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import FakeClock, Origin, ProxyThread, start_proxy
from tests.tls import TestCA, TLSOrigin


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A throw-away certificate authority (trustme) for TLS origins on loopback."""
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_origin(ca: TestCA) -> Iterator[TLSOrigin]:
    with TLSOrigin(ca.server_context()) as o:
        yield o


@pytest.fixture
def proxy() -> Iterator[ProxyThread]:
    """cproxy on built-in defaults (test_config), serving in a thread of its own."""
    with start_proxy() as p:
        yield p


@pytest.fixture
def clock(proxy: ProxyThread) -> FakeClock:
    """A fake clock installed as the proxy's cache clock: cached responses age on demand."""
    fake = FakeClock()
    proxy.runtime.cache.clock = fake
    return fake
