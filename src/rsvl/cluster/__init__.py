"""The train step's ``kuberay`` backend: build a KubeRay RayJob for a run and see it through.

Modules: :mod:`rsvl.cluster.config` (``KubeRayConfig``, read by :mod:`rsvl.config`),
:mod:`rsvl.cluster.rayjob` (``build_rayjob``), :mod:`rsvl.cluster.schema` (offline validation
against the vendored CRD schema) and :mod:`rsvl.cluster.submit` (``submit_rayjob``). Nothing is
imported here, so :mod:`rsvl.config` can import ``rsvl.cluster.config`` without a cycle.
"""
