"""Gates, the wrappers that apply them to blocks / channels / neurons, pruning and gate statistics."""
