"""Adapters that implement the ports in ``core/ports.py``; SDKs are imported lazily inside."""
