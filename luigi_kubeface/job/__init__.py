"""A job's definition (definition.py), its elements' identity and the code it ships (code/)."""
