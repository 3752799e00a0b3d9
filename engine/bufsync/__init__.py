"""bufsync: buffer-database synchronisation between 1C, Moodle and the state portals."""

__version__ = "0.1.0"
