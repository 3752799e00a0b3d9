"""Only what setup.cfg cannot say: the found packages plus the two data packages mapped in from the top."""

from setuptools import find_packages, setup

setup(packages=find_packages("engine") + ["bufsync.migrations", "bufsync.migrations.versions", "bufsync.mappings"])
