"""The bucket's format above raw storage: the layout of keys, records, signed blobs, the job's store."""
