"""What every long-running worker shares: health and metrics endpoints, watchdog, heap checks."""
