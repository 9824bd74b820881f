"""Errors that name the problem and the fix."""


class CompressError(Exception):
    """Base class for every error this package raises on bad input."""


class DataError(CompressError, ValueError):
    """A data set is unknown, missing or laid out in a way we cannot read."""


class WeightsNotFoundError(CompressError, FileNotFoundError):
    """Pretrained weights are not on disk and downloading was not allowed."""


class FormatError(CompressError, ValueError):
    """A file is corrupt, truncated, or written by another format version."""
