"""The reviewer page for DAO members and node operators (`dso serve`): pending batches with their checks,
the global library with provenance, the node's status."""

from dso.web.app import create_app
from dso.web.review import Reviewer, ReviewError

__all__ = ["ReviewError", "Reviewer", "create_app"]
