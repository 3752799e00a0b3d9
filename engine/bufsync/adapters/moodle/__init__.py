"""The Moodle Web Services client: transport, batching, isolation, errors for 1C."""
