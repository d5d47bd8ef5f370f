// Package nbd will be vdiskd's NBD protocol server (fixed newstyle,
// structured replies, BLOCK_STATUS with base:allocation and
// qemu:dirty-bitmap contexts) over a small backend interface that
// blockstore.Disk satisfies. It must never import net/http or prometheus
// (internal/deptest enforces it).
package nbd
