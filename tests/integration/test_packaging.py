"""setuptools finds the packages under engine/ (src-style); the shipped mappings and migrations are mapped in.

CI installs the project as a wheel would (not editable), so these compare what got installed with the checkout.
"""

from pathlib import Path

from tests.conftest import REPO


def test_the_installed_package_holds_every_module_of_the_checkout() -> None:
    import bufsync
    installed = Path(bufsync.__file__).resolve().parent
    source = REPO / "engine" / "bufsync"
    missing = [str(p.relative_to(source)) for p in source.rglob("*.py")
               if "__pycache__" not in p.parts and not (installed / p.relative_to(source)).is_file()]
    assert not missing, f"not installed (a folder without __init__.py?): {missing}"


def test_the_shipped_mappings_and_migrations_are_installed() -> None:
    from bufsync.paths import shipped_mappings_dir, shipped_migrations_dir
    shipped = {p.name for p in shipped_mappings_dir().glob("*.yaml")}
    assert {p.name for p in (REPO / "mappings").glob("*.yaml")} <= shipped
    revisions = {p.name for p in (REPO / "alembic" / "versions").glob("*.py")}
    assert revisions and revisions <= {p.name for p in (shipped_migrations_dir() / "versions").glob("*.py")}
    assert (shipped_migrations_dir() / "script.py.mako").is_file()
