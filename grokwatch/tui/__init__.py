"""The dashboard (Textual). Only the CLI imports this package.

``make_app`` in :mod:`grokwatch.tui.app` builds the app exactly as
``grokwatch tui`` does, so tests drive the real thing.
"""
