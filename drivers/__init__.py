"""Real hardware backends (installed as ``edged.drivers``)."""
