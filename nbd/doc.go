// Package nbd is vdiskd's NBD protocol server (NetworkBlockDevice
// doc/proto.md): fixed newstyle negotiation with NO_ZEROES, the options
// EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY and
// LIST/SET_META_CONTEXT (EXTENDED_HEADERS is answered ERR_UNSUP), and
// every transmission command: READ (structured, with holes, DF), WRITE,
// DISC, FLUSH, TRIM, CACHE, WRITE_ZEROES (NO_HOLE, FAST_ZERO) and
// BLOCK_STATUS (REQ_ONE) for any meta context the backend names.
//
// The server knows nothing of the block store. It serves an Exports table
// (name, describe, open, list) whose Export values do the I/O; mgmt makes
// VDIs into exports. The split keeps protocol rules here (ranges,
// alignment, flags, errno values, chunking) and storage rules there.
//
// One connection is a reader goroutine, a goroutine per request and one
// writer. The reader stops reading when the connection's budget of
// requests and bytes in flight is spent, so a fast client gets
// back-pressure rather than unbounded buffering. Replies go out in the
// order requests finish; the writer flushes the socket whenever nothing
// else is queued, so replies that finish together share a write.
//
// Durability: WRITE replies come after the store has committed the data
// (not synced); FUA and FLUSH sync. The backend's Flush covers writes from
// every connection, which is what CAN_MULTI_CONN promises.
//
// This package must never import net/http or prometheus
// (internal/deptest enforces it).
package nbd
