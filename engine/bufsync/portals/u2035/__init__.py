"""Университет 2035 (docs/portals/u2035.md): the learners' digital footprint from Moodle as xAPI statements to
its LRS and the files behind them to its S3 storage, after a four-stage connection with statuses."""

from bufsync.portals import register
from bufsync.portals.u2035.portal import U2035Portal

register(U2035Portal())
