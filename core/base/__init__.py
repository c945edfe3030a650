"""Foundation: errors, ids, units, settings, locations and progress events. Imports nothing of
blockvault; every other layer may import it."""
