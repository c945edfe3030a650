"""Object stores a vault lives in: a local directory or S3, behind one small interface."""
