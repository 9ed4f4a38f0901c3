"""mlops-reactor core: all logic, no azure.functions. See core/bootstrap.py for the wiring."""
