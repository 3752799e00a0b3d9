"""One module per Moodle component; importing them registers functions, tables and installers."""

from bufsync.sandbox.moodle.functions import webservice, users, customfields  # noqa: F401  (order: installers)
