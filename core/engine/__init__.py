"""Moving bytes: the block pipeline (backup, restore, verify), the snapshot store, devices and
images. Works on paths and repositories; never opens the catalog."""
