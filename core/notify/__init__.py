"""Notifications: what alerting and the other services hand over to be delivered to people."""
