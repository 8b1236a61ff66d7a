"""One KFP pipeline per paper, built from the shared components by :mod:`pipelines.dag`."""
