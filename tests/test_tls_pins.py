"""Whose certificate is whose (wolfpacs.dicom.tls.pinned_to), on certificates as ssl gives them."""

from __future__ import annotations

import hashlib

from wolfpacs.dicom.tls import pinned_to

DER = b"0\x82 a certificate's DER bytes"
FIELDS = {"subject": ((("commonName", "gpu-a"),), (("organizationName", "Vendor"),))}
SHA = f"sha256:{hashlib.sha256(DER).hexdigest()}"


def test_a_subject_pin_needs_every_attribute_it_names():
    assert pinned_to((FIELDS, DER), "CN=gpu-a", "")
    assert pinned_to((FIELDS, DER), "CN=gpu-a,O=Vendor", "")
    assert not pinned_to((FIELDS, DER), "CN=gpu-b", "")
    assert not pinned_to((FIELDS, DER), "CN=gpu-a,O=Other", "")
    assert not pinned_to((FIELDS, DER), "CN=gpu-a,OU=Lab", "")


def test_a_fingerprint_pin_is_that_certificate_and_no_other():
    assert pinned_to((FIELDS, DER), "", SHA)
    assert pinned_to((FIELDS, DER), "CN=gpu-a", SHA)
    assert not pinned_to((FIELDS, DER + b"x"), "", SHA)
    assert not pinned_to((FIELDS, DER), "CN=gpu-b", SHA)


def test_no_pin_pins_nothing_and_a_pinned_peer_without_a_certificate_is_not_it():
    assert pinned_to(None, "", "")
    assert not pinned_to(None, "CN=gpu-a", "")
    assert not pinned_to(None, "", SHA)
