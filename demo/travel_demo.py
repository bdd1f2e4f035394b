"""The travel-booking saga's participants as seen from outside: seed them, read their books.

For the tests and the demo to prove that a trip saga left the participants consistent: seats,
rooms and cars back, net charge zero, no itinerary left confirmed; or, past the pivot,
everything booked, charged, confirmed and notified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from demo.participants import SimulatedParticipants
from saga_kit.cli import new_saga_id

FLIGHT = "FL-100"
HOTEL = "hotel-harbour"
CAR_CLASS = "compact"
TRAVELLER = "traveller-1"
AGENCY = "agency"
NIGHTS = 3
TRIP_PRICE_CENTS = 84_900


@dataclass(frozen=True)
class TravelTables:
    """The participant tables, by the stack outputs that name them."""

    flights: str
    hotels: str
    cars: str
    payments: str
    itineraries: str
    notifications: str
    faults: str

    @classmethod
    def from_outputs(cls, outputs: dict[str, str]) -> TravelTables:
        """Reads the table names from the stack's CloudFormation outputs."""
        return cls(
            flights=outputs["FlightsTableName"],
            hotels=outputs["HotelsTableName"],
            cars=outputs["CarsTableName"],
            payments=outputs["PaymentsTableName"],
            itineraries=outputs["ItinerariesTableName"],
            notifications=outputs["NotificationsTableName"],
            faults=outputs["FaultTableName"],
        )


def trip_input(
    *, faults: list[dict[str, Any]] | None = None, saga_id: str | None = None,
    flight: str = FLIGHT, hotel: str = HOTEL, car_class: str = CAR_CLASS,
    traveller: str = TRAVELLER,
) -> dict[str, Any]:
    """A saga input for one trip: a seat, ``NIGHTS`` nights in one room, one car."""
    body: dict[str, Any] = {
        "saga_id": saga_id or new_saga_id(),
        "trip_id": f"trip-{new_saga_id()[:8]}",
        "traveller_id": traveller,
        "flight_id": flight,
        "hotel_id": hotel,
        "car_class": car_class,
        "nights": NIGHTS,
        "amount_cents": TRIP_PRICE_CENTS,
        "email": f"{traveller}@example.com",
    }
    if faults:
        body["faults"] = faults
    return body


def _counts(items: list[dict[str, Any]], prefix: str, attribute: str) -> dict[str, int]:
    return {i["pk"]["S"].removeprefix(prefix): int(i[attribute]["N"])
            for i in items if i["pk"]["S"].startswith(prefix)}


def _held(items: list[dict[str, Any]], prefix: str) -> int:
    return sum(1 for i in items if i["pk"]["S"].startswith(prefix))


class TravelParticipants(SimulatedParticipants):
    """Seeds and reads the simulated flights, hotels, cars, payments, itinerary and notifications."""

    def __init__(self, dynamodb: Any, tables: TravelTables):
        super().__init__(dynamodb, payments_table=tables.payments, fault_table=tables.faults)
        self.tables = tables

    def _seed(self, table: str, pk: str, attribute: str, count: int) -> None:
        self._db.put_item(TableName=table, Item={"pk": {"S": pk}, attribute: {"N": str(count)}})

    def seed_flight(self, seats: int, flight: str = FLIGHT) -> None:
        """Puts ``seats`` seats of a flight on sale."""
        self._seed(self.tables.flights, f"flight#{flight}", "seats", seats)

    def seed_hotel(self, rooms: int, hotel: str = HOTEL) -> None:
        """Makes ``rooms`` rooms of a hotel available."""
        self._seed(self.tables.hotels, f"hotel#{hotel}", "rooms", rooms)

    def seed_cars(self, count: int, car_class: str = CAR_CLASS) -> None:
        """Makes ``count`` cars of a class available."""
        self._seed(self.tables.cars, f"cars#{car_class}", "available", count)

    def seats(self, flight: str = FLIGHT) -> int:
        """Seats of a flight still on sale."""
        return self._counter(self.tables.flights, f"flight#{flight}", "seats")

    def rooms(self, hotel: str = HOTEL) -> int:
        """Rooms of a hotel still available."""
        return self._counter(self.tables.hotels, f"hotel#{hotel}", "rooms")

    def cars(self, car_class: str = CAR_CLASS) -> int:
        """Cars of a class still available."""
        return self._counter(self.tables.cars, f"cars#{car_class}", "available")

    def saga_effects(self, saga_id: str) -> dict[str, Any]:
        """Everything the participants hold for one saga."""
        itinerary = self._get(self.tables.itineraries, saga_id)
        return {
            "flight": self._get(self.tables.flights, f"booking#{saga_id}") is not None,
            "hotel": self._get(self.tables.hotels, f"booking#{saga_id}") is not None,
            "car": self._get(self.tables.cars, f"rental#{saga_id}") is not None,
            **self._charge_effects(saga_id),
            "itinerary": itinerary["status"]["S"] if itinerary else None,
            "notified": self._get(self.tables.notifications, saga_id) is not None,
        }

    def books(self) -> dict[str, Any]:
        """The participants' totals: what must balance after any mix of sagas."""
        flights = self._scan(self.tables.flights)
        hotels = self._scan(self.tables.hotels)
        cars = self._scan(self.tables.cars)
        itineraries = self._scan(self.tables.itineraries)
        return {
            "seats": _counts(flights, "flight#", "seats"),
            "rooms": _counts(hotels, "hotel#", "rooms"),
            "cars": _counts(cars, "cars#", "available"),
            "flight_bookings": _held(flights, "booking#"),
            "hotel_bookings": _held(hotels, "booking#"),
            "car_rentals": _held(cars, "rental#"),
            **self._ledger_books(),
            "itineraries_confirmed": sum(1 for i in itineraries
                                         if i["status"]["S"] == "confirmed"),
            "itineraries_cancelled": sum(1 for i in itineraries
                                         if i["status"]["S"] == "cancelled"),
            "notifications": len(self._scan(self.tables.notifications)),
        }
