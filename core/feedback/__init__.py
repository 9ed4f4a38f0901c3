"""The feedback loop: inference data collected from the online endpoints, late labels joined to it
(the live quality of each model version), and production inputs compared with what the model was
trained on (drift)."""
