"""Our own events: the app publishes its decisions as CloudEvents 1.0 (see catalogue.py)."""
