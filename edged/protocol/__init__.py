"""What the device and the central side share: the canonical form, records and their
signatures, keys, topics, signed messages, envelopes, reconnect policy. Imports no
device or central code."""
