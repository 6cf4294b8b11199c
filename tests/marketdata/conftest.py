"""Fixtures of the market-data tests: an archive directory of their own."""

import pytest


@pytest.fixture
def archive_dir(settings, tmp_path):
    settings.ARCHIVE_DIR = tmp_path / "archive"
    return settings.ARCHIVE_DIR
