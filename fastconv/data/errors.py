"""Exceptions raised by `fastconv.data`.

Every error names the file, folder or URL it is about, so a user can act on it
without reading a traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file exists but cannot be used: corrupt, truncated, wrong format."""


class ChecksumError(DataError):
    """A downloaded file's checksum differs from the published one."""


class DownloadError(DataError):
    """Every mirror failed for a file; the message lists what each one did."""


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk (and downloading was disabled or impossible)."""
