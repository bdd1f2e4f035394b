"""Benchmark notifications handlers: the kit runtime around an echo (see the package docstring)."""

from order_fulfillment import echo

send_confirmation = echo
