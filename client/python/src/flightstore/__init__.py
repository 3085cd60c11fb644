"""Flightstore's Python client: PyStore's API over Arrow Flight.

>>> import flightstore
>>> store = flightstore.connect("grpc://127.0.0.1:8815")
>>> coll = store.collection("NASDAQ")
>>> coll.write("AAPL", df, metadata={"source": "feed"})
>>> coll.item("AAPL").to_pandas(start="2024-01-02", filters=[("price", ">", 100)])

`flightstore.aio` has the same API with awaitable calls; `flightstore.migrate` copies a
PyStore folder into a server.
"""
from .errors import (AlreadyExists, Conflict, Error, InvalidArgument, NotFound, PermissionDenied,
                     ResourceExhausted, Timeout, Unauthenticated, Unavailable)
from .store import Collection, Item, Store, connect

__version__ = "0.1.0"

__all__ = [
    "connect", "Store", "Collection", "Item",
    "Error", "NotFound", "InvalidArgument", "AlreadyExists", "Conflict", "Unauthenticated",
    "PermissionDenied", "ResourceExhausted", "Unavailable", "Timeout",
]
