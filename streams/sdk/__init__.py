"""Software development kits for the systems around contactflow: the producer platform systems
use to send contact events, and the downstream client consumers use to obey privacy commands."""
