"""Testing and experimentation facility: benchmarks, algorithm packages, sandboxed evaluation."""
