"""blockvault engine: catalog, lifecycle plans, block pipeline, stores. Never imports textual."""

__version__ = "0.1.0"
