import pytest


@pytest.fixture(scope="session")
def titan_workdir(tmp_path_factory):
    """A folder laid out as torchtitan's debug configs expect (tests/assets/...)."""
    from _assets import build_assets

    return build_assets(str(tmp_path_factory.mktemp("titan")))
