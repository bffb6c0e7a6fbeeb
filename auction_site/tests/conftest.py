import subprocess

import pytest

from testsupport.servers import BASE_DIR, MANAGE, production_env


@pytest.fixture(scope="session")
def static_root(tmp_path_factory):
    """`collectstatic` with production settings, once: the manifest WhiteNoise serves off DEBUG."""
    root = tmp_path_factory.mktemp("staticfiles")
    subprocess.run(
        [*MANAGE, "collectstatic", "--noinput", "-v0"],
        env=production_env(STATIC_ROOT=str(root)),
        cwd=BASE_DIR,
        check=True,
        capture_output=True,
        timeout=180,
    )
    return root
