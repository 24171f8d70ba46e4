//! The Prometheus endpoint (`--metrics-addr`): text exposition via prometheus-client.
