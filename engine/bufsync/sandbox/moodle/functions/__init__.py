"""One module per Moodle component; importing them registers functions, tables and installers."""

# The import order is the order the installers run in (see site.installer):
# isort: off
from bufsync.sandbox.moodle.functions import webservice, users, customfields, categories, courses  # noqa: F401
from bufsync.sandbox.moodle.functions import enrol  # noqa: F401  (roles, enrolments)
from bufsync.sandbox.moodle.functions import cohorts, groups, grades, completion  # noqa: F401  (topics)
from bufsync.sandbox.moodle.functions import reportbuilder, mobile  # noqa: F401  (report builder, site settings)
from bufsync.sandbox.moodle.functions import calendar  # noqa: F401  (calendar events)
from bufsync.sandbox.moodle.functions import assign  # noqa: F401  (assignments, submissions, their files)
# isort: on
