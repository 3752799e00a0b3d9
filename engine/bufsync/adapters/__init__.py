"""Adapters: each speaks one remote (Moodle Web Services, a portal API)."""
