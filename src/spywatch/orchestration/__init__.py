"""The Prefect side of the command line: the local server a command starts (``server``), the
Prefect API its flows run against (``api``), and this checkout's ``flows/`` (``checkout``).

With ``spywatch.cli``, the only part of ``src/spywatch`` that imports Prefect or ``flows/``; the
stages themselves are plain functions that run without it.
"""
