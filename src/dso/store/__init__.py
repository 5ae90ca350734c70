"""Content stores: put bytes, get them back by CID, verified on every read, whatever the backend says."""

from dso.store.base import ContentStore, StoreError
from dso.store.local import LocalBlockStore

__all__ = ["ContentStore", "LocalBlockStore", "StoreError"]
