"""WolfPACS: a DICOM load balancer between hospitals and pools of AI workers.

Hospitals (clients) send studies with C-STORE to the outside port; each
study goes to one worker of the client's pool; the workers' derived series
come back on the inside port and go to the client's destination. Every
instance is spooled durably before it is acknowledged.
"""

__version__ = "0.1.0"
