"""The service wing: ZeroTrustML over HTTP.

``protocol``
    What a node signs (registration, submission) and the request bodies (no web framework needed).
``rounds``
    :class:`~zerotrustml.service.rounds.Federation`: registered nodes, the open round, deadlines, and the
    round's decision (the simulator's rules), all state in the backend.
``app``
    The FastAPI app (``zerotrustml serve``): versioned routes, RFC 9457 problems, Prometheus metrics and a
    WebSocket of live events. Needs the ``service`` extra (``pip install 'zerotrustml[service]'``).

``node``
    :class:`~zerotrustml.service.node.TrainingNode` (``zerotrustml node``): a training node as a client.
``cluster``
    :class:`~zerotrustml.service.cluster.Cluster` (``zerotrustml cluster``): the service and N node processes
    on loopback, scored against the Byzantine draw and an honest-only model.
``commands``
    The ``serve``, ``node`` and ``cluster`` commands.

Only ``protocol``, ``rounds`` and ``commands`` import without the extra.
"""
