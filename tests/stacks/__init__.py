"""Stacks the suite deploys besides the reference app: declared with the kit's public API only."""
