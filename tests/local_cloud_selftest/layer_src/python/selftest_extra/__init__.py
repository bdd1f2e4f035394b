"""A package the self-test's extra layer provides (and no code zip does)."""

GREETING = "hello from the layer"
