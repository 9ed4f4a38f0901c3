"""The feedback loop: what production sees, compared with what the model was trained on."""
