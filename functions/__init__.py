"""Thin handlers: decode the trigger, call one core service, map the result."""
