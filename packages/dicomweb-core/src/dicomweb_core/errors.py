"""Typed errors. Each maps to one HTTP status, in one place (``http_status``)."""

from __future__ import annotations


class DicomwebError(Exception):
    """Base class. ``status`` is the HTTP status the error maps to."""

    status: int = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MultipartError(DicomwebError):
    """The multipart/related body is malformed (no boundary, truncated, headers over cap)."""

    status = 400


class MediaTypeError(DicomwebError):
    """The request's Content-Type is not one the endpoint accepts."""

    status = 415


class NotAcceptableError(DicomwebError):
    """No representation matches the request's Accept header."""

    status = 406


class PayloadTooLargeError(DicomwebError):
    """The request body exceeds a configured cap."""

    status = 413


class BadRequestError(DicomwebError):
    """A malformed query parameter, UID or path element."""

    status = 400


class InvalidUIDError(BadRequestError):
    """A UID that is not ``[0-9.]``, longer than 64 characters, or has leading zeros."""


class NotFoundError(DicomwebError):
    status = 404


class DicomFormatError(DicomwebError):
    """The bytes of a part are not a DICOM object we can understand."""

    status = 400


class StoreError(DicomwebError):
    """The object store failed (I/O error, S3 unreachable, ...)."""

    status = 503


class CatalogError(DicomwebError):
    """The catalog database failed."""

    status = 503


class EventDeliveryError(DicomwebError):
    """The event sink did not accept an event."""

    status = 503


class ConfigError(DicomwebError):
    """Bad configuration, detected at start-up."""

    status = 500


def http_status(exc: BaseException) -> int:
    """The HTTP status for any exception: typed errors carry theirs, anything else is 500."""
    return exc.status if isinstance(exc, DicomwebError) else 500
