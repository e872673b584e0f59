"""Exceptions raised by ZeroTrustML.

All input errors derive from ``ValidationError``, itself a ``ValueError``,
and their messages name the parameter and the rule that failed. A wrong
dtype or container type raises ``TypeError``.
"""

from zerotrustml._core import (
    EmptyInputError,
    NonFiniteError,
    ParameterError,
    PreconditionError,
    ShapeError,
    ValidationError,
)

__all__ = [
    "ValidationError",
    "EmptyInputError",
    "ShapeError",
    "NonFiniteError",
    "PreconditionError",
    "ParameterError",
]
