"""Handler package for LocalCloud's layer self-test: it needs the extra layer and Powertools."""
