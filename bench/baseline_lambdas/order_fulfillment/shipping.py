"""Baseline shipping handlers: echo only (see the package docstring)."""

from order_fulfillment import echo

create_shipment = echo
cancel_shipment = echo
