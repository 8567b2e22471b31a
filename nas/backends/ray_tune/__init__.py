"""The Ray Tune backend (``--backend ray``): the same search, scheduled by Ray Tune on a Ray cluster.

* :mod:`~nas.backends.ray_tune.backend`: ``RayBackend``, which wires a ``ray.tune.Tuner``;
* :mod:`~nas.backends.ray_tune.session`: starting or joining Ray, and sizing trials to it;
* :mod:`~nas.backends.ray_tune.searcher`: ``StudySearcher``, the driver side (ask/tell on our study);
* :mod:`~nas.backends.ray_tune.trainable`: ``ray_trial``, the function trainable run by Ray workers.

Nothing is imported here: Ray imports the trainable's module to start each trial actor, and it
must stay light.
"""
