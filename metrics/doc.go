// Package metrics will expose vPool and vDisk statistics (the OVS keys of
// seed 000, each from a real counter) and pebble's own metrics to
// Prometheus.
package metrics
