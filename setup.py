"""What pyproject.toml cannot say: ship the top-level ``conf/`` inside the package as ``benchmark/conf``.

``conf/`` stays at the top of the repository, where users read and edit it; an installed wheel has no repository, so
the wheel carries the same files as ``benchmark/conf`` and ``benchmark/config_path.py`` looks there first. pyproject's
``packages.find`` only finds folders under ``benchmark/``, and a hand-kept package list would silently leave the next
new subpackage out of the wheel, so the lists are found here: ``benchmark``'s packages, and ``conf/`` and each of its
folders as data-only packages under ``benchmark.conf`` (setuptools warns about data folders that are not packages).
"""

from setuptools import find_namespace_packages, find_packages, setup

CONF = ["benchmark.conf", *(f"benchmark.conf.{name}" for name in find_namespace_packages(where="conf"))]

setup(
    packages=[*find_packages(include=["benchmark", "benchmark.*"]), *CONF],
    package_dir={"benchmark.conf": "conf"},  # its subfolders follow: benchmark.conf.source is conf/source
    package_data={name: ["*.yaml"] for name in CONF},
)
