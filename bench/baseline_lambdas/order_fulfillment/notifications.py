"""Baseline notifications handlers: echo only (see the package docstring)."""

from order_fulfillment import echo

send_confirmation = echo
