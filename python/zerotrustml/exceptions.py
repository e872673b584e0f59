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
