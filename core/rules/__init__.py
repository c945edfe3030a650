"""Pure rules: plans, status machines and retention. Functions of catalog rows and facts; no
I/O, no database session."""
