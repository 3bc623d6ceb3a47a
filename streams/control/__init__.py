"""The control plane: privacy requests and recording retention, and the faust app that runs them."""
