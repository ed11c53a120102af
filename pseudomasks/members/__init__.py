"""Teacher members: pose estimators and segmenters, one module each (see ``registry``)."""
