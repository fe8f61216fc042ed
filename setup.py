"""Build hook: the wheel carries the top-level ``data/`` folder as ``engine/bundled_data`` (the package's data)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithData(build_py):
    """Copies ``data/`` into the built ``engine`` package, so a non-editable install can open the bundled study."""

    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "data"
        target = Path(self.build_lib) / "engine" / "bundled_data"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)


setup(cmdclass={"build_py": BuildWithData})
