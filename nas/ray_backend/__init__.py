"""The Ray Tune backend's parts, wired into a ``ray.tune.Tuner`` by :func:`nas.tune.run_ray_search`.

* :mod:`nas.ray_backend.searcher`: ``StudySearcher``, the driver side (ask/tell on our study);
* :mod:`nas.ray_backend.trainable`: ``ray_trial``, the function trainable run by Ray workers;
* :mod:`nas.ray_backend.runner`: ``TuneCandidateRunner``, the recording runner with Ray rung reports.

Nothing is imported here: Ray imports the trainable's module to start each trial actor, and it
must stay light.
"""
