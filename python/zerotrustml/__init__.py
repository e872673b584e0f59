"""ZeroTrustML: Byzantine-resilient federated learning, native to Holochain.

The robust aggregation rules live in Rust (``zerotrustml._core``); this
package exposes them as plain functions in ``zerotrustml.aggregators``.
"""

from zerotrustml import aggregators, exceptions
from zerotrustml.aggregators import AggregationResult

__version__ = "0.1.0"
__all__ = ["aggregators", "exceptions", "AggregationResult", "__version__"]
