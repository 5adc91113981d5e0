"""Which presentation contexts the node accepts (``acse._accept_contexts``): storage and
Verification, never another SOP class of the standard, however pynetdicom names it."""

from __future__ import annotations

import pytest
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from wolfpacs.dicom import acse

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def accepted(*abstracts: str) -> set[str]:
    """The SOP classes of ``abstracts`` (one context each, Explicit VR LE) the AC accepts."""
    rq = A_ASSOCIATE()
    for n, abstract in enumerate(abstracts):
        cx = PresentationContext()
        cx.context_id = 2 * n + 1
        cx.abstract_syntax = abstract
        cx.transfer_syntax = [EXPLICIT]
        rq.presentation_context_definition_list.append(cx)
    _, contexts = acse._accept_contexts(rq, 16384)
    return {c.abstract_syntax for c in contexts.values()}


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.31",  # Modality Worklist - FIND (pynetdicom names it otherwise)
        "1.2.840.10008.5.1.4.32.1",  # General Purpose Worklist - FIND
        "1.2.840.10008.1.20.1",  # Storage Commitment Push Model
        "1.2.840.10008.1.20.2",  # Storage Commitment Pull Model (retired)
        "1.2.840.10008.3.1.2.3.3",  # Modality Performed Procedure Step
        "1.2.840.10008.5.1.4.1.2.2.1",  # Study Root Query/Retrieve - FIND
    ],
)
def test_a_sop_class_that_stores_nothing_is_refused_and_the_others_accepted(sop_class):
    assert accepted(CT, sop_class, "1.2.840.10008.1.1") == {CT, "1.2.840.10008.1.1"}


@pytest.mark.parametrize(
    "sop_class",
    [
        "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR Storage
        "1.2.840.10008.5.1.4.1.1.88.1",  # Text SR Storage - Trial (retired)
        "1.2.826.0.1.3680043.9.9999.1",  # private
        "1.2.840.10008.5.1.4.1.1.9999.1",  # not (yet) in any dictionary: taken for storage
    ],
)
def test_storage_private_and_unknown_sop_classes_are_accepted(sop_class):
    assert accepted(sop_class) == {sop_class}
