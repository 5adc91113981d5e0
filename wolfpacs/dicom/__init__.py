"""The DICOM wire: PDUs, associations, DIMSE command sets, Part 10 files, routing tags, TLS.

The node's own data path, bottom layer but for :mod:`wolfpacs.config`:
it imports no actor, no store, nothing of the node; it may import
:mod:`wolfpacs.config`, pydicom (:mod:`~wolfpacs.dicom.peek`) and
pynetdicom (:mod:`~wolfpacs.dicom.acse` only).

In the order data flows:

- :mod:`~wolfpacs.dicom.acse`: establishing an association (A-ASSOCIATE);
- :mod:`~wolfpacs.dicom.association`: an established one (P-DATA, abort);
- :mod:`~wolfpacs.dicom.ending`: its release, by PS3.8's states (collisions, ARTIM);
- :mod:`~wolfpacs.dicom.pdu`, :mod:`~wolfpacs.dicom.errors`, :mod:`~wolfpacs.dicom.sockets`:
  its framing, its errors, its sockets' settings;
- :mod:`~wolfpacs.dicom.dimse`: the C-STORE and C-ECHO command sets, and refusals;
- :mod:`~wolfpacs.dicom.part10`: the files the spool keeps;
- :mod:`~wolfpacs.dicom.peek`: the routing tags, read without decoding the rest;
- :mod:`~wolfpacs.dicom.status`: the statuses the node answers and reads;
- :mod:`~wolfpacs.dicom.tls`, :mod:`~wolfpacs.dicom.uids`.

Why not pynetdicom's own upper layer: its reactors poll every millisecond,
read 4 KiB at a time and hand each PDU between two threads, which on a
pass-through node costs about three times DCMTK's time on receive alone
(``PERFORMANCE-NOTES.md``). pynetdicom still encodes and decodes the
A-ASSOCIATE PDUs and negotiates presentation contexts, and plays the
simulated peers (:mod:`wolfpacs.testing`).
"""
