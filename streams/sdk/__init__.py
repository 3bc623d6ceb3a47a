"""Software development kits for the systems around contactflow: the producer platform systems
use to send contact events, the downstream client consumers use to obey privacy commands, and
the reader of tagged events of any contract version (`tagged`)."""
