from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import Origin


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o
