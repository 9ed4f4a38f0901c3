"""Offline validation of infra/: Bicep parsing, checkov, and drift between the app and its infrastructure."""
