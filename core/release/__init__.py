"""Releases: a registered model version goes to QA, is smoke-tested, approved and canaried into
production, or rolled back. See ``core.release.service`` for the state machine."""
