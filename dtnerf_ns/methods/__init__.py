"""The registered methods, each on the shared talking-head core (:mod:`dtnerf_ns.core`)."""
