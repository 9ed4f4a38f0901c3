"""Errors the ML steps report to a person rather than as a traceback.

Each CLI turns these into one line on stderr and a non-zero exit, so an operator reading a failed
pipeline step sees what is wrong with the input. Anything else escaping a step is a bug and keeps
its traceback.
"""


class MLError(ValueError):
    """Bad input to an ML step (data, model directory, verdict, arguments)."""


class DataError(MLError):
    """A data file breaks the CSV contract; the message names the file and the problem."""


class ModelError(MLError):
    """A model directory is missing files or holds something that is not a usable model."""


class VerdictError(MLError):
    """A verdict file is malformed or does not belong to the model being registered."""
