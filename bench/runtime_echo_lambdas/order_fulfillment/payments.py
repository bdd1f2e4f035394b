"""Benchmark payments handlers: the kit runtime around an echo (see the package docstring)."""

from order_fulfillment import echo

charge_payment = echo
refund_payment = echo
