"""The Textual console: screens start workers and render; every action goes through the façade."""
