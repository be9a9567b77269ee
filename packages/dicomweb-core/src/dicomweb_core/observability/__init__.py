"""Logs, metrics and traces of the services. :mod:`.app` wires them into the app; the rest is
importable on its own (the settings are parsed with the others at start-up)."""
