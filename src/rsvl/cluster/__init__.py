"""The train step's ``kuberay`` backend: build a KubeRay RayJob for a run and see it through.

Modules: :mod:`rsvl.cluster.rayjob` (``build_rayjob``), :mod:`rsvl.cluster.template` (the
committed example manifest), :mod:`rsvl.cluster.submit` (``submit_rayjob``) and
:mod:`rsvl.cluster.volume` (copies to and from the shared volume). Its settings are
:class:`rsvl.config.cluster.KubeRayConfig`.
"""
