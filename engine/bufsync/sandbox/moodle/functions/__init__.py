"""One module per Moodle component; importing them registers functions, tables and installers."""

from bufsync.sandbox.moodle.functions import webservice, users, customfields, categories, courses  # noqa: F401  (order: installers)
from bufsync.sandbox.moodle.functions import enrol  # noqa: F401,E402  (roles, enrolments)
from bufsync.sandbox.moodle.functions import cohorts, groups, grades, completion  # noqa: F401,E402  (topics)
