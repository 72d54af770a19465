from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Origin
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
