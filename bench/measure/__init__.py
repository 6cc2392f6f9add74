"""What a run is scored by: task metrics, executed MACs (fvcore), realized latency, machine throughput."""
