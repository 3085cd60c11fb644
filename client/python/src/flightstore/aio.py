"""The asyncio client: `flightstore`'s API, every call that talks to the server awaitable.

It runs the synchronous client in a thread pool (pyarrow.flight has no asyncio API), so
the event loop never blocks on the network; calls made concurrently run in parallel on
one connection.

>>> store = await flightstore.aio.connect("grpc://127.0.0.1:8815")
>>> coll = store.collection("NASDAQ")          # no call
>>> await coll.write("AAPL", df)
>>> item = await coll.item("AAPL")
>>> df = await item.to_pandas(start="2024-01-02")
>>> await item.metadata                          # properties are awaitable too
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AsyncIterable, Awaitable, Callable, Dict, Iterable, Iterator, List, Optional, TypeVar, Union

import pandas as pd
import pyarrow as pa

from . import store as _sync

T = TypeVar("T")
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="flightstore-aio")


async def _run(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, functools.partial(fn, *args, **kwargs))


async def connect(url: str = "grpc://127.0.0.1:8815", token: Optional[str] = None,
                  username: Optional[str] = None, password: Optional[str] = None,
                  tls_root_certs: Optional[Union[str, bytes]] = None) -> "Store":
    """Connect (see `flightstore.connect`)."""
    return Store(await _run(_sync.connect, url, token, username, password, tls_root_certs))


class Store:
    """A server (see `flightstore.Store`)."""

    def __init__(self, store: _sync.Store):
        self.sync = store

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await _run(self.sync.close)

    async def list_collections(self) -> List[str]:
        return await _run(self.sync.list_collections)

    def collection(self, name: str) -> "Collection":
        """The collection `name` (no call: it is created by its first write)."""
        return Collection(self.sync.collection(name))

    async def delete_collection(self, name: str) -> None:
        await _run(self.sync.delete_collection, name)

    async def sql(self, query: str) -> pa.Table:
        return await _run(self.sync.sql, query)

    async def health(self) -> Dict[str, Any]:
        return await _run(self.sync.health)


def _from_async(frames: AsyncIterable[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """A blocking iterator (for the upload thread) over an async iterable of the loop."""
    iterator = frames.__aiter__()
    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(iterator.__anext__(), loop).result()
        except StopAsyncIteration:
            return


class Collection:
    """A collection (see `flightstore.Collection`)."""

    def __init__(self, collection: _sync.Collection):
        self.sync = collection
        self.name = collection.name

    async def write(self, item: str, data: Any, metadata: Optional[Dict[str, Any]] = None,
                    overwrite: bool = False, **options: Any) -> Dict[str, Any]:
        return await _run(self.sync.write, item, data, metadata, overwrite, **options)

    async def append(self, item: str, data: Any, **options: Any) -> Dict[str, Any]:
        return await _run(self.sync.append, item, data, **options)

    async def upsert(self, item: str, data: Any, dedup_on: Optional[List[str]] = None,
                     keep: str = "last", **options: Any) -> Dict[str, Any]:
        return await _run(self.sync.upsert, item, data, dedup_on, keep, **options)

    async def append_stream(self, item: str, frames: Union[Iterable[Any], AsyncIterable[Any]],
                            **options: Any) -> Dict[str, Any]:
        """One upload of the frames of an iterable or an async iterable."""
        if hasattr(frames, "__aiter__"):
            frames = _from_async(frames, asyncio.get_running_loop())  # type: ignore[arg-type]
        return await _run(self.sync.append_stream, item, frames, **options)

    async def write_batch(self, items: Dict[str, Any], metadata: Optional[Dict[str, Dict[str, Any]]] = None,
                          overwrite: bool = False) -> Dict[str, Any]:
        return await _run(self.sync.write_batch, items, metadata, overwrite)

    async def read_batch(self, items: List[str], **read_args: Any) -> Dict[str, pd.DataFrame]:
        return await _run(self.sync.read_batch, items, **read_args)

    async def list_items(self, **metadata: Any) -> List[str]:
        return await _run(self.sync.list_items, **metadata)

    async def item(self, item: str, snapshot: Optional[str] = None, version: Optional[int] = None) -> "Item":
        return Item(await _run(self.sync.item, item, snapshot, version))

    async def delete_item(self, item: str) -> None:
        await _run(self.sync.delete_item, item)

    async def create_snapshot(self, snapshot: Optional[str] = None) -> Dict[str, Any]:
        return await _run(self.sync.create_snapshot, snapshot)

    async def list_snapshots(self) -> List[str]:
        return await _run(self.sync.list_snapshots)

    async def delete_snapshot(self, snapshot: str) -> None:
        await _run(self.sync.delete_snapshot, snapshot)


class Item:
    """An item (see `flightstore.Item`); `metadata` and `info` are awaitable."""

    def __init__(self, item: _sync.Item):
        self.sync = item
        self.name = item.name

    async def to_pandas(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        return await _run(self.sync.to_pandas, *args, **kwargs)

    async def to_arrow(self, *args: Any, **kwargs: Any) -> pa.Table:
        return await _run(self.sync.to_arrow, *args, **kwargs)

    async def to_polars(self, *args: Any, **kwargs: Any) -> Any:
        return await _run(self.sync.to_polars, *args, **kwargs)

    @property
    def metadata(self) -> Awaitable[Dict[str, Any]]:
        return _run(lambda: self.sync.metadata)

    @property
    def info(self) -> Awaitable[Dict[str, Any]]:
        return _run(lambda: self.sync.info)

    async def update_metadata(self, metadata: Dict[str, Any]) -> Dict[str, Any]:
        return await _run(self.sync.update_metadata, metadata)

    async def versions(self) -> List[Dict[str, Any]]:
        return await _run(self.sync.versions)
