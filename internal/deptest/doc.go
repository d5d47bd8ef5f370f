// Package deptest checks the import graph: the data path (block store, CBT,
// NBD) never imports HTTP, Prometheus or the management layers, so a slow
// scrape or an API bug cannot reach a guest's I/O. The check is its test.
package deptest
