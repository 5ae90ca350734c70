"""Content stores: put bytes, get them back by CID, verified on every read, whatever the backend says."""

from dso.errors import StoreError
from dso.store.base import ContentStore
from dso.store.local import LocalBlockStore

__all__ = ["ContentStore", "LocalBlockStore", "StoreError"]
