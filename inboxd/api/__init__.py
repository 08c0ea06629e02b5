"""The daemon's API: the operations the CLI's commands are (routes), what each does (handlers),
who is calling (identity), the HTTP server that enforces it (server) and the thin client (client)."""
