"""The C-STORE statuses WolfPACS answers with, and how it reads a peer's answer.

WolfPACS-specific failures use the ranges PS3.4 Annex B gives the storage
service: ``A7xx`` refused, out of resources (try again later), ``Cxxx``
cannot understand (do not send it again as it is).
"""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple

__all__ = ["Answer", "Outcome", "Status", "classify", "response"]


class Status:
    SUCCESS = 0x0000
    OUT_OF_RESOURCES = 0xA700  # spool_max_bytes queued, disk below min_free_bytes, or I/O error
    NO_WORKER = 0xA701  # no active worker in the client's pool
    BUSY = 0xA702  # a part of the node restarts or stops, or its store is unavailable
    NO_POOL = 0xA703  # no rule of the client matched the series, and it has no default pool
    PROCESSING_FAILURE = 0x0110  # an unexpected error; logged with its traceback
    UNREADABLE = 0xC001  # the dataset cannot be parsed as far as its routing tags
    NO_STUDY_UID = 0xC002  # no StudyInstanceUID, or not a valid UID
    UNKNOWN_STUDY = 0xC003  # inside port: no study with that UID was given to this worker
    AMBIGUOUS_STUDY = 0xC004  # inside port: this worker holds that UID for two clients
    # General failures of PS3.7 annex C (C.5), for commands the node does not act on
    SOP_CLASS_NOT_SUPPORTED = 0x0122  # "Refused: SOP Class not supported"
    UNRECOGNIZED_OPERATION = 0x0211  # "Unrecognized operation"


class Answer(NamedTuple):
    """What a C-STORE-RSP says: a status, and an ErrorComment where there is one."""

    status: int
    comment: str = ""


def response(status: int, comment: str = "") -> Answer:
    """The answer to send; the comment is cut to the 64 characters of an LO."""
    return Answer(status, comment[:64])


class Outcome(Enum):
    """What a sender does with a peer's C-STORE status."""

    DELIVERED = "delivered"  # success or warning: the peer has it
    RETRY = "retry"  # the peer may take it later: back off and send it again
    DEAD = "dead"  # the peer will never take it as it is: dead/


def classify(status: int) -> Outcome:
    if status == 0x0000 or status in (0x0001, 0x0107, 0x0116) or 0xB000 <= status <= 0xBFFF:
        return Outcome.DELIVERED
    if 0xA700 <= status <= 0xA7FF or status in (0x0110, 0x0213):
        return Outcome.RETRY
    return Outcome.DEAD
