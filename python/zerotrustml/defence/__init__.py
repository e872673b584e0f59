"""The defence wing: how a round's updates are judged and aggregated.

``rules``
    The plain robust rules as defences (re-exported here: :func:`apply`,
    :func:`check_precondition`, :data:`DEFENCES`, :data:`ALL_DEFENCES`,
    :data:`DOWNWEIGHT_FLAG`, :class:`Verdict`).
``proofs``
    Ed25519-signed edge proofs and the SDK's :class:`~zerotrustml.defence.proofs.EdgeClient`.
``detection``
    Similarity statistics without ground truth.
``committee``
    The round's committee: draw, re-scoring and signed votes.
``reputation``
    The RB-BFT reputation ledger.
``config``
    :class:`~zerotrustml.defence.config.DefenceConfig`, the pipeline's settings.
``pipeline``
    The full detection pipeline, stage by stage.

Only ``rules`` is imported here; the other modules load when imported.
"""

from zerotrustml.defence.rules import (
    ALL_DEFENCES,
    DEFENCES,
    DOWNWEIGHT_FLAG,
    Verdict,
    apply,
    check_precondition,
    defence_names,
)

__all__ = ["ALL_DEFENCES", "DEFENCES", "DOWNWEIGHT_FLAG", "Verdict", "apply", "check_precondition", "defence_names"]
