"""Developer tools: the benchmarks and the end-to-end demo. No worker imports them."""
