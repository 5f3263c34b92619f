"""Ray's private parts are reached through one module that refuses a Ray release whose internals were not read."""

import pytest

from clutune.errors import UserError
from clutune.platform.cluster.ray_internals import TESTED_RAY, check_ray_version


def test_the_installed_ray_is_the_one_read():
    check_ray_version()
    check_ray_version(f"{TESTED_RAY}.3")


@pytest.mark.parametrize("version", ["2.61.0", "3.0.0", "2.6.0"])
def test_another_ray_release_fails_in_one_line_naming_the_module(version):
    with pytest.raises(UserError, match=r"ray_internals\.py") as caught:
        check_ray_version(version)
    assert "\n" not in str(caught.value) and version in str(caught.value)


def test_no_other_module_reaches_into_ray_internals():
    from pathlib import Path

    import clutune

    package = Path(clutune.__file__).parent
    offenders = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "ray_internals.py" and ("ray._private" in p.read_text() or "._local_tuner" in p.read_text())
    ]
    assert offenders == []
