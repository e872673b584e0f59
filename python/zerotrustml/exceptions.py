"""Exceptions raised by ZeroTrustML.

All input errors derive from ``ValidationError``, itself a ``ValueError``,
and their messages name the parameter and the rule that failed. A wrong
dtype or container type raises ``TypeError``. A submission that breaks a
validation rule raises ``SubmissionRejected``, with ``field`` and ``code``
attributes.
"""

from zerotrustml._core import (
    EmptyInputError,
    NonFiniteError,
    ParameterError,
    PreconditionError,
    ShapeError,
    SubmissionRejected,
    ValidationError,
)

__all__ = [
    "ValidationError",
    "EmptyInputError",
    "ShapeError",
    "NonFiniteError",
    "PreconditionError",
    "ParameterError",
    "SubmissionRejected",
]

# Store errors are defined with the backends; re-exported here so every error
# of the package can be imported from one place. They are defined in base.py
# before it imports anything from zerotrustml, so either import order works.
from zerotrustml.backends.base import (  # noqa: E402
    StoreCorruptError,
    StoreError,
    StoreLockedError,
    SubmitCancelled,
)

__all__ += ["StoreError", "StoreLockedError", "StoreCorruptError", "SubmitCancelled"]
