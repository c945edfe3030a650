"""One module per noun. Each verb is plan (rules) -> claim (jobs, in one transaction) -> job
(engine)."""
