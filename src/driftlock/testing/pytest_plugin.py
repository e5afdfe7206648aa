"""The pytest plugin of :mod:`driftlock.testing` (registered through the ``pytest11`` entry point).

It only defines fixtures; nothing is imported from driftlock until a test asks for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from driftlock.testing import FakeDriftlock


@pytest.fixture
def driftlock_fake() -> Iterator[FakeDriftlock]:
    """A :class:`~driftlock.testing.FakeDriftlock` answering every Driftlock client during the test."""
    from driftlock.testing import FakeDriftlock

    with FakeDriftlock() as fake:
        yield fake
