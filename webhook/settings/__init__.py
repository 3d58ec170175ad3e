"""MLflowSetting objects: the model and its validation, where they come from, and the index."""
