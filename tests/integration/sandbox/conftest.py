"""A debug-mode sandbox site in memory per test (no HTTP): the component tests call its functions directly."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bufsync.sandbox.moodle.site import Site, SiteConfig
from tests.integration.sandbox.test_cohorts_groups import TOKEN


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site(SiteConfig(token=TOKEN, debug=True))
    yield s
    s.close()
