"""The second example saga: travel booking, with a parallel group and an asynchronous participant.

``book_flight``, ``book_hotel`` and ``book_car`` run at the same time (one ``Parallel`` state);
the car-rental company is an asynchronous participant: the state machine sends it the command
with a task token through a queue, and its worker replies when the car is booked. Then
``charge_payment``, ``confirm_itinerary`` (the pivot) and ``notify_traveller`` (retriable).

The participants are simulated on DynamoDB tables with real state (seats, rooms, cars, a
ledger; see ``lambdas/travel_booking``), which is what the local cloud tests check. The app uses
only the kit's public API.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from saga_kit.cdk import (
    Callback,
    ParallelGroup,
    RetryPolicy,
    Saga,
    SagaApi,
    SagaDefinition,
    Step,
    StepKind,
)
from stacks.order_fulfillment import LAMBDAS_DIR, lambda_code, participant_table

#: Results are ids and amounts: 4 KiB each keeps six steps' worst-case state well under 256 KiB.
RESULT_BYTES = 4096

TRAVEL_BOOKING = SagaDefinition(
    name="travel_booking",
    description="Book flight, hotel and car together, charge, confirm, notify.",
    input_model="travel_booking.schema.TripRequest",
    steps=[
        ParallelGroup("book_trip", branches=[
            Step("book_flight", action="travel_booking.flights.book_flight",
                 compensation="travel_booking.flights.cancel_flight", timeout_seconds=4,
                 max_result_bytes=RESULT_BYTES),
            Step("book_hotel", action="travel_booking.hotels.book_hotel",
                 compensation="travel_booking.hotels.cancel_hotel", timeout_seconds=4,
                 max_result_bytes=RESULT_BYTES),
            # The car-rental company answers through its queue. A command it does not answer
            # within 20 s, or a silence of 6 s between its heartbeats, compensates the trip.
            Step("book_car", action="travel_booking.cars.book_car",
                 compensation="travel_booking.cars.cancel_car", timeout_seconds=20,
                 # A car worker still silent after 10 s is reported by the stuck detector,
                 # long before the saga's 15 minutes.
                 callback=Callback(heartbeat_seconds=6, stuck_after_seconds=10),
                 retry=RetryPolicy(max_attempts=2, interval_seconds=1, max_delay_seconds=4),
                 max_result_bytes=RESULT_BYTES),
        ]),
        Step("charge_payment", action="travel_booking.payments.charge_payment",
             compensation="travel_booking.payments.refund_payment", timeout_seconds=4,
             retry=RetryPolicy(max_attempts=3, interval_seconds=1, max_delay_seconds=8),
             max_result_bytes=RESULT_BYTES),
        Step("confirm_itinerary", kind=StepKind.PIVOT,
             action="travel_booking.itinerary.confirm_itinerary",
             compensation="travel_booking.itinerary.cancel_itinerary", timeout_seconds=4,
             max_result_bytes=RESULT_BYTES),
        Step("notify_traveller", kind=StepKind.RETRIABLE,
             action="travel_booking.notifications.notify_traveller", timeout_seconds=4,
             max_result_bytes=RESULT_BYTES),
    ],
)

#: Participant table of each step (its action and compensation get read/write on it).
PARTICIPANTS = {
    "book_flight": "FLIGHTS_TABLE",
    "book_hotel": "HOTELS_TABLE",
    "book_car": "CARS_TABLE",
    "charge_payment": "PAYMENTS_TABLE",
    "confirm_itinerary": "ITINERARIES_TABLE",
    "notify_traveller": "NOTIFICATIONS_TABLE",
}


class TravelBookingStack(Stack):
    """The travel-booking saga with its simulated participant services."""

    def __init__(self, scope: Construct, construct_id: str, *,
                 definition: SagaDefinition = TRAVEL_BOOKING, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tables = {name: participant_table(self, name.title().replace("_", ""))
                       for name in [*PARTICIPANTS.values(), "FAULT_TABLE"]}
        self.saga = Saga(
            self,
            "TravelBooking",
            definition=definition,
            code=lambda_code(),
            handlers_dir=LAMBDAS_DIR,
            environment={name: table.table_name for name, table in self.tables.items()},
        )
        for step, table_key in PARTICIPANTS.items():
            self.saga.grant(step, self.tables[table_key].grant_read_write_data,
                            self.tables["FAULT_TABLE"].grant_read_write_data)
        self.api = SagaApi(self, "Api", sagas=[self.saga], code=lambda_code(),
                           handlers_dir=LAMBDAS_DIR)
        for name, table in self.tables.items():
            CfnOutput(self, f"{name.title().replace('_', '')}Name", value=table.table_name)
