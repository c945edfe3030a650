"""The catalog: SQLModel rows, the database and its migrations, the shared context and the
plain views the fronts read."""
