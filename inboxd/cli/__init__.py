"""The `inboxd` command line, a client of the store and the daemon."""
