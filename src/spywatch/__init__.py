"""spywatch: keeps a PatchTST classifier on SPY healthy, every night, and proves it.

Nothing happens at import: heavy libraries (torch, prefect, great_expectations, evidently)
are imported inside the functions that use them.
"""

__version__ = "0.1.0"
