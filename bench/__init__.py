"""bench: profile size, latency, memory and accuracy of models and artifacts; the egoedge CLI."""
