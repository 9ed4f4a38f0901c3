"""The feedback loop: inference data collected from the online endpoints, late labels joined to it, and
the live quality of each model version computed from the two."""
