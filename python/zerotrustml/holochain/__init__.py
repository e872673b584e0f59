"""The conductor client: Holochain 0.6 admin and app websockets, signed zome calls, local networks.

``client``
    :class:`AdminClient` (agents, apps, interfaces, capability grants),
    :class:`AppClient` (an authenticated app socket: signals, reconnect after
    a conductor restart) and :class:`Cell` (signed zome calls on one cell;
    a broken submission rule raises ``SubmissionRejected`` as the embedded
    store does).
``network``
    :class:`LocalNetwork`: a bootstrap/signal server and K conductors on
    loopback with the hApp installed once per agent, torn down on exit.
``admission``
    Closed networks: the admission key, the membrane proofs it signs
    (:func:`issue_admission`) and the DNA property that names it.
``errors``
    :class:`ConductorError` and its kinds (unavailable, timeout, refused,
    zome error); all are ``StoreError``\\ s.
``wire``
    msgpack framing and Holochain hashes.

The Holochain *backend* (the ``Backend`` interface on the DHT, one agent per
node) is :class:`zerotrustml.backends.HolochainBackend`, built on this.
"""

from zerotrustml.holochain.admission import (
    admission_property,
    generate_admission_key,
    issue_admission,
    verify_admission,
)
from zerotrustml.holochain.client import AdminClient, AppClient, Cell, Signal, SigningCredentials
from zerotrustml.holochain.errors import (
    CallRefused,
    ConductorError,
    ConductorTimeout,
    ConductorUnavailable,
    ZomeCallError,
)
from zerotrustml.holochain.network import Agent, LocalNetwork, NetworkError, dna_properties

__all__ = [
    "AdminClient",
    "AppClient",
    "Cell",
    "Signal",
    "SigningCredentials",
    "ConductorError",
    "ConductorUnavailable",
    "ConductorTimeout",
    "CallRefused",
    "ZomeCallError",
    "Agent",
    "LocalNetwork",
    "NetworkError",
    "dna_properties",
    "admission_property",
    "generate_admission_key",
    "issue_admission",
    "verify_admission",
]
