"""A sandbox Moodle: Moodle 4.5's REST web-service protocol over real HTTP, state in SQLite.

It reproduces what the recorded transcripts in shared/moodle-ws show, errors and limits
included; `functions/` holds one module per Moodle component.
"""
