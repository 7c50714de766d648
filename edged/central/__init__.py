"""The central side: collectors and their store. Imports only edged.protocol (and the
shared clock, log and errors)."""
