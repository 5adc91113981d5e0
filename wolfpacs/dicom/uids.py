"""The few UIDs the data path names itself (PS3.6 annex A)."""

from __future__ import annotations

__all__ = ["APPLICATION_CONTEXT", "UNCOMPRESSED", "VERIFICATION"]

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
# Explicit VR LE, Implicit VR LE, Explicit VR BE, Deflated Explicit VR LE
UNCOMPRESSED = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
]  # fmt: skip
