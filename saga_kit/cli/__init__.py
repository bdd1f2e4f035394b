"""The ``saga`` command line: demo, and the tools to start and inspect sagas."""
