"""The federated-learning wing: data, models, attacks and the simulator that runs them.

``data``
    Datasets (bundled, or MNIST/EMNIST/CIFAR-10 from a local directory) as seeded train/test splits.
``partition``
    Seeded partitions of a training set over nodes (IID, Dirichlet label skew, shards).
``models``, ``models_torch``
    Models behind one flat-vector protocol; the torch ones need the ``torch`` extra.
``attacks``
    Byzantine attacks on the round's updates.
``simulation``
    The simulator: :class:`~zerotrustml.fl.simulation.RunConfig`,
    :class:`~zerotrustml.fl.simulation.Simulation` and :func:`~zerotrustml.fl.simulation.run`.

The simulator calls :mod:`zerotrustml.defence`; nothing here imports the CLI, the matrix or plots.
This file imports nothing: each module loads when imported.
"""
