"""The pytest plugin of :mod:`driftlock.testing`, registered through the ``pytest11`` entry point.

It defines the ``driftlock_fake`` fixture and nothing else: no hook, no option, nothing changed for a
test that does not ask for it. Disable it with ``-p no:driftlock``.
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
