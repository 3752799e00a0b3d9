"""One folder per portal with the same inner shape: client, payloads, scenarios, dispatch handler."""
