"""Simulated hardware backends with test controls (installed as ``edged.simulators``)."""
