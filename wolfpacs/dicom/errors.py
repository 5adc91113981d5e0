"""How an association ends badly: the errors of :mod:`wolfpacs.dicom`'s upper layer.

Every one means the association is over (it has been closed, and an
A-ABORT sent where PS3.8 asks for one); the socket is the caller's to forget.
"""

from __future__ import annotations

__all__ = [
    "AssociationError", "DatasetTooLargeError", "PeerAbortedError", "ProtocolError",
    "RejectedError",
]  # fmt: skip


class AssociationError(Exception):
    """The association cannot go on; it has been closed."""


class PeerAbortedError(AssociationError):
    """The peer aborted, or the connection broke."""


class ProtocolError(AssociationError):
    """The peer broke PS3.8; an A-ABORT has been sent."""


class RejectedError(AssociationError):
    """The peer rejected the association (A-ASSOCIATE-RJ)."""

    def __init__(self, result: int, source: int, diagnostic: int) -> None:
        super().__init__(
            f"association rejected (result {result}, source {source}, diagnostic {diagnostic})"
        )
        self.result, self.source, self.diagnostic = result, source, diagnostic


class DatasetTooLargeError(AssociationError):
    """A dataset over the size limit; the association has been aborted."""
