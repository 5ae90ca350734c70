"""DSO rounds on Flower: each Flower client is a DSO node, and a Flower round is a DSO sync.

Optional: needs the `flower` extra (`pip install 'dso[flower]'`, which brings `flwr[simulation]`). Nothing
else in DSO imports this package. The apps (`dso.flower.app`) run on Flower's simulation engine on one
machine (`dso flower simulate`) and on its deployment engine across machines (docs/flower.md).
"""
