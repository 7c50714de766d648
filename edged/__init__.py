"""edged: access control and tamper-evident records for rooms where personal data is handled.

Data flows one way: ``edged.drivers`` (hardware) -> ``edged.core`` (decisions) ->
``edged.device.journal`` (signed, hash-chained records) -> ``edged.sync`` (central servers).
"""

__version__ = "0.1.0"
