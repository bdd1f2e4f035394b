"""The order-fulfillment saga's participants, simulated on DynamoDB with real state.

Inventory (stock counts and reservations), payments (a ledger of accounts and charges),
shipping (shipments) and notifications (order confirmations) each keep their own table, so tests
and the demo can check the real effect of a saga, not a record of calls. Faults can be injected
per saga and step (see :mod:`fault_injection`, shared with the other example apps).
"""
