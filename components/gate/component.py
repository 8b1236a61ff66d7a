"""``gate`` and ``promote``: champion/challenger decision on the same pinned data, then the alias move.

Library: ``rsvl.steps.promotion.run_gate`` / ``promote_candidate``
CLI: ``rsvl gate``
Tests: ``components/gate/tests/test_component.py`` (pass, promote, a re-run left as it is; a rejected version
    never promoted), ``tests/steps/test_promotion.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec, end-to-end local run)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def gate(config_json: str, version: int, report: dsl.Output[dsl.Markdown]) -> bool:
    """Score candidate and champion now; record the decision, reasons and deltas on the version.

    Args:
        config_json: The resolved run config (JSON).
        version: The candidate's registry version.
        report: The decision as Markdown (rules, candidate vs champion).

    Returns:
        Whether the candidate passed (the pipeline promotes it in a ``dsl.If`` branch).
    """
    import shutil
    import tempfile

    from rsvl.config import RunConfig
    from rsvl.steps.promotion import PASSED, run_gate

    with tempfile.TemporaryDirectory(prefix="rsvl-gate-") as out:
        outcome = run_gate(RunConfig.model_validate_json(config_json), version, out, promote=False)
        shutil.copyfile(outcome.report, report.path)
    return outcome.verdict == PASSED


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(config_json: str, version: int) -> int:
    """Point ``champion`` at a version the gate passed.

    Args:
        config_json: The resolved run config (JSON).
        version: The passed candidate.

    Returns:
        The champion version.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.promotion import promote_candidate

    return promote_candidate(RunConfig.model_validate_json(config_json), version)
