"""Jobs and claims: job rows with heartbeats and cancellation, and the atomic claim of the
objects a job changes."""
