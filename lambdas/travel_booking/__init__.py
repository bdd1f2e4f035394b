"""The travel-booking saga's participants, simulated on DynamoDB with real state.

Flights (seats per flight and one booking per saga), hotels (rooms per hotel and one booking per
saga), cars (cars per class and one rental per saga; the rental company answers asynchronously, so
``book_car`` runs as a callback step's worker), payments (a ledger of accounts and charges), the
itinerary (the pivot) and notifications each keep their own table, so tests and the demo can check
the real effect of a saga, not a record of calls. The counting and the ledger are the order app's
too (:mod:`stock`, :mod:`ledger`), and so is fault injection (:mod:`fault_injection`).
"""
