"""The pure core: data types and computations with no I/O, easy to test and to reason about."""
