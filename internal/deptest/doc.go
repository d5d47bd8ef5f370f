// Package deptest checks the import graph: the data path (block store, CBT,
// NBD) never imports HTTP, Prometheus or the management layers, so a slow
// scrape or an API bug cannot reach a guest's I/O; the management services
// (volume, auth, task, kv, fault) never import HTTP, the call mechanism or
// a surface, so every surface can call them; and no API surface imports
// another. The check is its test.
package deptest
