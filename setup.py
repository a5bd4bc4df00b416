"""Compiles the message catalogues (.po -> .mo) into the built package.

Everything else is in pyproject.toml; the .mo files are build products, never committed.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CATALOGUES = Path("src", "flask_email_signin", "translations")


class BuildWithCatalogues(build_py):
    def run(self) -> None:
        super().run()
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        for po_path in sorted(CATALOGUES.glob("*/LC_MESSAGES/*.po")):
            locale = po_path.parent.parent.name
            with po_path.open("rb") as po_file:
                catalog = read_po(po_file, locale=locale)
            target = Path(self.build_lib, *po_path.with_suffix(".mo").parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("wb") as mo_file:
                write_mo(mo_file, catalog)


setup(cmdclass={"build_py": BuildWithCatalogues})
