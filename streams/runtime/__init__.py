"""What every long-running worker shares: health and metrics endpoints, the watchdog, heap checks."""
