"""Университет 2035 (docs/portals/u2035.md): the learners' digital footprint from Moodle as xAPI statements to
its LRS and the files behind them to its S3 storage, after a four-stage connection with statuses."""
