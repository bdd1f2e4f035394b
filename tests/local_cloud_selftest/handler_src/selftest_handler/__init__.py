"""Handler package for LocalCloud's self-test Lambda."""
