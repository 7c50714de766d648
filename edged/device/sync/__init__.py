"""Sync to central servers over MQTT: records out (the journal is the outbox), signed
access lists, commands and receipts in."""
