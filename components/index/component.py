"""``index``: after a promotion, the archive search index rebuilt with the new champion (a new index version).

Library: ``rsvl.steps.search_index.run_index``
CLI: ``rsvl index``
Tests: ``components/index/tests/test_component.py`` (the promoted version indexed, ``CURRENT`` moved), ``tests/search/test_search.py``, ``tests/pipelines/test_pipelines.py`` (compiled spec)
"""

from kfp import dsl

from components import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def index(config_json: str, version: int) -> str:
    """Index the track's ``search.dataset`` with champion ``version``; point ``CURRENT`` at it.

    Args:
        config_json: The resolved run config (JSON) with a ``search`` section.
        version: The version ``promote`` just made champion.

    Returns:
        The index folder (``<search.out_dir>/<registered name>/v<version>``); serve it with ``rsvl serve --index``.
    """
    from rsvl.config import RunConfig
    from rsvl.steps.search_index import run_index

    return str(run_index(RunConfig.model_validate_json(config_json), version))
