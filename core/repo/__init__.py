"""The repository of chunks and manifests in an object store: envelopes, crypto, writer
sessions and garbage collection. Knows nothing of the catalog."""
