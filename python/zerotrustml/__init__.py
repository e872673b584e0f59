"""ZeroTrustML: Byzantine-resilient federated learning, native to Holochain.

The robust aggregation rules live in Rust (``zerotrustml._core``); this
package exposes them as plain functions in ``zerotrustml.aggregators``.

The package has three wings above that core face (``aggregators``,
``validation``, ``exceptions``):

``zerotrustml.fl``
    data, partitions, models, attacks and the simulator;
``zerotrustml.defence``
    the robust rules as defences, edge proofs, detection, committee,
    reputation and the full pipeline;
``zerotrustml.backends``
    the stores a run writes to;
``zerotrustml.holochain``
    the conductor client and local networks;
``zerotrustml.service``
    the HTTP service, node processes and clusters (with the ``service`` extra).

``zerotrustml.flower`` (with the ``flower`` extra) is a Flower strategy that
aggregates with these rules; ``zerotrustml.export`` takes a trained model
out of a run's store. ``zerotrustml.plugins`` registers a user's own attacks, aggregation rules,
models and datasets by name across the wings (from Python or through the
``zerotrustml.plugins`` entry point group).

The SDK's public names are re-exported here, so ``from zerotrustml import
EdgeClient, RunConfig, simulate`` works.
"""

# The core face first (exceptions and backends/base.py rely on this order; see their comments),
# then the wings, which import it.
from zerotrustml import aggregators, exceptions, validation
from zerotrustml.aggregators import AggregationResult
from zerotrustml.defence.proofs import EdgeClient, EdgeProof, EdgeProofGenerator, KeyRing
from zerotrustml.fl.simulation import RunConfig, Simulation, SimulationResult, run, simulate
from zerotrustml.validation import ModelSpec, Submission

__version__ = "0.1.0"

__all__ = [
    "aggregators",
    "exceptions",
    "validation",
    "AggregationResult",
    "ModelSpec",
    "Submission",
    "EdgeClient",
    "EdgeProof",
    "EdgeProofGenerator",
    "KeyRing",
    "RunConfig",
    "Simulation",
    "SimulationResult",
    "run",
    "simulate",
    "__version__",
]
