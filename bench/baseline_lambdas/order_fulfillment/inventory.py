"""Baseline inventory handlers: echo only (see the package docstring)."""

from order_fulfillment import echo

reserve_inventory = echo
release_inventory = echo
