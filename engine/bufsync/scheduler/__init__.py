"""Scheduled operation: the job registry, schedules, the daemon, heartbeats and status."""
